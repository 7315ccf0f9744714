using System.Net;
using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using Taihu.Server.FunctionalTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

/// <summary>Tenants, users and the audit log, as administrators keep them in the browser.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class AdministrationTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task System_administrator_creates_a_tenant_and_its_users_and_deletes_them()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var page = await fixture.NewPageAsync();
        // Deleting asks first; the test says yes.
        page.Dialog += (_, dialog) => dialog.AcceptAsync();
        await ConsoleFixture.SignInAsync(page, "sysadmin@taihu.local", ServerProcess.AdminPassword);
        await page.GotoAsync("/tenants");
        await page.GetByPlaceholder("Tenant name").FillAsync("City " + suffix);
        await page.GetByRole(AriaRole.Button, new() { Name = "Create tenant" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Heading, new() { Name = "Users: City " + suffix })).ToBeVisibleAsync();
        var tenantId = Guid.Parse(new Uri(page.Url).Query.Split('=')[^1], System.Globalization.CultureInfo.InvariantCulture);

        // Without a password: the activation link to pass on.
        var form = page.GetByTestId("create-user");
        var admin = $"admin-{suffix}@example.com";
        await form.GetByPlaceholder("E-mail").FillAsync(admin);
        await form.Locator("select").SelectOptionAsync("TENANT_ADMIN");
        await form.GetByRole(AriaRole.Button, new() { Name = "Create user" }).ClickAsync();
        await Expect(page.GetByTestId("activation-link")).ToContainTextAsync("/api/noauth/activate?activateToken=");
        await Expect(page.Locator($"tr[data-user='{admin}']")).ToContainTextAsync("Tenant administrator");

        // With one: ready to sign in; then deleted.
        var viewer = $"viewer-{suffix}@example.com";
        await form.GetByPlaceholder("E-mail").FillAsync(viewer);
        await form.GetByPlaceholder("Password (optional)").FillAsync("viewer-password-9");
        await form.GetByRole(AriaRole.Button, new() { Name = "Create user" }).ClickAsync();
        var row = page.Locator($"tr[data-user='{viewer}']");
        await Expect(row).ToContainTextAsync("Viewer");
        await Expect(page.GetByTestId("activation-link")).ToHaveCountAsync(0);
        await ConsoleFixture.ScreenshotAsync(page, "console-users");
        await row.GetByRole(AriaRole.Button, new() { Name = "Delete" }).ClickAsync();
        await Expect(row).ToHaveCountAsync(0);

        // The tenant goes, with its users.
        await page.GotoAsync("/tenants");
        var tenantRow = page.Locator($"tr[data-tenant='City {suffix}']");
        await tenantRow.GetByRole(AriaRole.Button, new() { Name = "Delete" }).ClickAsync();
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/tenants$"));
        await Expect(tenantRow).ToHaveCountAsync(0);
        using var sysAdmin = await PlatformApi.SysAdminAsync(fixture.Server);
        Assert.Equal(HttpStatusCode.NotFound, (await sysAdmin.SendAsync(HttpMethod.Get, $"/api/tenant/{tenantId}")).StatusCode);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Tenant_administrator_reads_the_audit_log_and_an_operator_is_refused_it()
    {
        var name = "Audited " + Guid.NewGuid().ToString("N")[..8];
        await fixture.Admin.CreateDeviceAsync(name);
        var page = await fixture.NewAdminPageAsync();
        await page.GotoAsync("/audit?search=" + Uri.EscapeDataString(name));
        var rows = page.GetByTestId("audit-table").Locator("tbody tr");
        await Expect(rows).ToHaveCountAsync(1);
        await Expect(rows.First).ToContainTextAsync("ADDED");
        await Expect(rows.First).ToContainTextAsync("DEVICE " + name);
        await Expect(rows.First).ToContainTextAsync(fixture.AdminEmail);
        await page.Context.CloseAsync();

        const string password = "operator-password-1";
        var operatorEmail = await fixture.CreateUserAsync("OPERATOR", password);
        var other = await fixture.NewPageAsync();
        await ConsoleFixture.SignInAsync(other, operatorEmail, password);
        await other.GotoAsync("/audit");
        await Expect(other.GetByRole(AriaRole.Alert)).ToHaveTextAsync("You don't have permission to perform this operation.");
        await Expect(other.GetByTestId("audit-table")).ToHaveCountAsync(0);
        await other.Context.CloseAsync();
    }
}
