using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using Taihu.Server.FunctionalTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class RoleTests(ConsoleFixture fixture)
{
    [Theory]
    [InlineData("SYS_ADMIN", "System administrator", new[] { "Home", "Tenants", "Users" }, new[] { "Devices", "Alarms", "Audit log", "Integrations" })]
    [InlineData("TENANT_ADMIN", "Tenant administrator", new[] { "Home", "Devices", "Alarms", "Device profiles", "Integrations", "MQTT clients", "Audit log", "Users" }, new[] { "Tenants" })]
    [InlineData("OPERATOR", "Operator", new[] { "Home", "Devices", "Alarms", "Device profiles", "Integrations" }, new[] { "MQTT clients", "Audit log", "Users", "Tenants" })]
    [InlineData("VIEWER", "Viewer", new[] { "Home", "Devices", "Alarms", "Device profiles", "Integrations" }, new[] { "MQTT clients", "Audit log", "Users", "Tenants" })]
    public async Task Each_role_signs_in_sees_its_navigation_and_signs_out(string authority, string roleName, string[] shown, string[] hidden)
    {
        const string password = "role-password-1";
        var (email, secret) = authority switch
        {
            "SYS_ADMIN" => ("sysadmin@taihu.local", ServerProcess.AdminPassword),
            "TENANT_ADMIN" => (fixture.AdminEmail, ConsoleFixture.AdminPassword),
            _ => (await fixture.CreateUserAsync(authority, password), password),
        };
        var page = await fixture.NewPageAsync();
        await ConsoleFixture.SignInAsync(page, email, secret);
        await Expect(page.GetByTestId("current-user")).ToHaveTextAsync($"{email} ({roleName})");
        var navigation = page.Locator(".mud-navmenu");
        foreach (var link in shown)
        {
            await Expect(navigation.GetByRole(AriaRole.Link, new() { Name = link, Exact = true })).ToBeVisibleAsync();
        }

        foreach (var link in hidden)
        {
            await Expect(navigation.GetByRole(AriaRole.Link, new() { Name = link, Exact = true })).ToHaveCountAsync(0);
        }

        await page.GetByTestId("sign-out").ClickAsync();
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/login$"));
        await page.GotoAsync("/");
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/login\\?ReturnUrl="));
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Viewer_sees_no_edits_on_a_device_page_and_the_server_refuses_them()
    {
        const string password = "viewer-password-2";
        var email = await fixture.CreateUserAsync("VIEWER", password);
        var (id, _) = await fixture.Admin.CreateDeviceAsync("Meter " + Guid.NewGuid().ToString("N")[..8]);
        var alarm = await fixture.Admin.PostAsync("/api/alarm", new { originator = new { entityType = "DEVICE", id }, type = "Leak", severity = "MAJOR" });
        var alarmId = alarm["id"]!["id"]!.GetValue<string>();

        var page = await fixture.NewPageAsync();
        await ConsoleFixture.SignInAsync(page, email, password);
        await page.GotoAsync($"/devices/{id}");
        var row = page.Locator("tr[data-alarm-type='Leak']");
        await Expect(row.GetByTestId("alarm-status")).ToHaveTextAsync("Active, not acknowledged");
        // Read, not change: no buttons, no forms, no token.
        await Expect(row.GetByRole(AriaRole.Button)).ToHaveCountAsync(0);
        await Expect(page.GetByTestId("shared-form")).ToHaveCountAsync(0);
        await Expect(page.GetByTestId("rpc-form")).ToHaveCountAsync(0);
        await Expect(page.GetByTestId("delete-device")).ToHaveCountAsync(0);
        await Expect(page.GetByTestId("access-token")).ToHaveCountAsync(0);

        // The same requests made anyway, with the viewer's session: refused by the server.
        var attribute = await page.APIRequest.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/attributes/SHARED_SCOPE",
            new() { DataObject = new { setpoint = 5 } });
        Assert.Equal(403, attribute.Status);
        var rpc = await page.APIRequest.PostAsync($"/api/plugins/rpc/twoway/{id}", new() { DataObject = new { method = "open" } });
        Assert.Equal(403, rpc.Status);
        var antiforgery = await page.Locator("form[data-testid] input[name=__RequestVerificationToken], input[name=__RequestVerificationToken]").First.GetAttributeAsync("value");
        await page.APIRequest.PostAsync($"/devices/{id}", new()
        {
            Form = page.APIRequest.CreateFormData()
                .Append("_handler", "alarm-action")
                .Append("__RequestVerificationToken", antiforgery!)
                .Append("AlarmAction", "ack:" + alarmId),
            MaxRedirects = 0,
        });
        Assert.Equal(403, (await page.APIRequest.PostAsync($"/api/alarm/{alarmId}/ack")).Status);
        Assert.Equal("ACTIVE_UNACK", (await fixture.Admin.GetAsync($"/api/alarm/{alarmId}"))["status"]!.GetValue<string>());
        Assert.Empty((await fixture.Admin.GetAsync($"/api/plugins/telemetry/DEVICE/{id}/values/attributes/SHARED_SCOPE")).AsArray());
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Live_values_stream_needs_a_session_and_a_device_of_the_users_tenant()
    {
        var (id, _) = await fixture.Admin.CreateDeviceAsync("Streamed " + Guid.NewGuid().ToString("N")[..8]);
        var anonymous = await fixture.NewPageAsync();
        var refused = await anonymous.APIRequest.GetAsync($"/console/devices/{id}/stream");
        Assert.Equal(401, refused.Status);
        Assert.Contains("sign in again", await refused.TextAsync(), StringComparison.Ordinal);
        await anonymous.Context.CloseAsync();

        var admin = await fixture.NewAdminPageAsync();
        var missing = await admin.APIRequest.GetAsync($"/console/devices/{Guid.NewGuid()}/stream");
        Assert.Equal(404, missing.Status);
        await admin.Context.CloseAsync();
    }
}
