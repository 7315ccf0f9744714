using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class SignInTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task Tenant_admin_signs_in_and_out()
    {
        var page = await fixture.NewPageAsync();
        await page.GotoAsync("/devices");
        // Not signed in: the console asks for a sign-in and comes back afterwards.
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/login\\?ReturnUrl=%2Fdevices$"));
        await ConsoleFixture.ScreenshotAsync(page, "console-sign-in");
        await page.GetByLabel("E-mail").FillAsync(fixture.AdminEmail);
        await page.GetByLabel("Password").FillAsync(ConsoleFixture.AdminPassword);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/devices$"));
        await Expect(page.GetByTestId("current-user")).ToContainTextAsync(fixture.AdminEmail + " (Tenant administrator)");
        await Expect(page.GetByRole(AriaRole.Link, new() { Name = "Device profiles" })).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Link, new() { Name = "Tenants" })).ToHaveCountAsync(0);

        // The management API takes the console's cookie for same-origin calls (charts will use it).
        var me = await page.APIRequest.GetAsync("/api/auth/user");
        Assert.Equal(200, me.Status);
        Assert.Contains(fixture.AdminEmail, await me.TextAsync(), StringComparison.Ordinal);

        await page.GetByTestId("sign-out").ClickAsync();
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/login$"));
        await page.GotoAsync("/devices");
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/login\\?ReturnUrl="));
        Assert.Equal(401, (await page.APIRequest.GetAsync("/api/auth/user")).Status);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Wrong_password_is_told_on_the_page()
    {
        var page = await fixture.NewPageAsync();
        await page.GotoAsync("/login");
        await page.GetByLabel("E-mail").FillAsync(fixture.AdminEmail);
        await page.GetByLabel("Password").FillAsync("not-the-password");
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Alert)).ToHaveTextAsync("Wrong e-mail or password. Check both and try again.");
        await Expect(page.GetByTestId("current-user")).ToHaveCountAsync(0);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task System_administrator_sees_tenants_not_devices()
    {
        var page = await fixture.NewPageAsync();
        await ConsoleFixture.SignInAsync(page, "sysadmin@taihu.local", Taihu.Server.FunctionalTests.Support.ServerProcess.AdminPassword);
        await Expect(page.GetByRole(AriaRole.Link, new() { Name = "Tenants" })).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Link, new() { Name = "Devices" })).ToHaveCountAsync(0);
        await Expect(page.GetByTestId("stat-tenants")).ToHaveTextAsync(new System.Text.RegularExpressions.Regex("^[1-9]"));
        await page.Context.CloseAsync();
    }
}
