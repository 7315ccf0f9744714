using System.Globalization;
using System.Text.RegularExpressions;
using Taihu.Console.BrowserTests.Support;
using Taihu.Server.FunctionalTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class HomeTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task Home_counts_devices_online_and_alarms_live_for_a_tenant_and_broker_figures_for_the_system_administrator()
    {
        // A tenant of its own, so that the figures are this test's alone.
        using var sysAdmin = await PlatformApi.SysAdminAsync(fixture.Server);
        var email = $"home-{Guid.NewGuid():N}@example.com";
        var (_, admin) = await sysAdmin.CreateTenantWithAdminAsync("Home tenant", email, "home-admin-pw");
        using var _ = admin;
        var (id, token) = await admin.CreateDeviceAsync("Counter 1");
        await admin.CreateDeviceAsync("Counter 2");

        var page = await fixture.NewPageAsync();
        await ConsoleFixture.SignInAsync(page, email, "home-admin-pw");
        await page.GotoAsync("/");
        await Expect(page.GetByTestId("stat-devices")).ToHaveTextAsync("2");
        await Expect(page.GetByTestId("stat-online")).ToHaveTextAsync("0");
        await Expect(page.GetByTestId("stat-offline")).ToHaveTextAsync("2");
        await Expect(page.GetByTestId("stat-alarmsMAJOR")).ToHaveTextAsync("0");

        // A device connects and an alarm is raised: the open page follows.
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        await Expect(page.GetByTestId("stat-online")).ToHaveTextAsync("1");
        await Expect(page.GetByTestId("stat-offline")).ToHaveTextAsync("1");
        await admin.PostAsync("/api/alarm", new { originator = new { entityType = "DEVICE", id }, type = "Jam", severity = "MAJOR" });
        await Expect(page.GetByTestId("stat-alarmsMAJOR")).ToHaveTextAsync("1");
        await Expect(page.GetByTestId("stat-alarmsCRITICAL")).ToHaveTextAsync("0");
        // The tenant's own points stored (its devices' only): the total grows by what the device sends.
        var tenantPoints = page.GetByTestId("stat-pointsStored");
        await Expect(tenantPoints).ToHaveAttributeAsync("data-total", new Regex("^[0-9]+$"));
        var tenantBefore = long.Parse((await tenantPoints.GetAttributeAsync("data-total"))!, CultureInfo.InvariantCulture);
        await device.PublishAsync("v1/devices/me/telemetry", "{\"a\":1,\"b\":2,\"c\":3}");
        await Expect(tenantPoints).ToHaveAttributeAsync("data-total", new Regex("^[0-9]+$"));
        await Expect(tenantPoints).Not.ToHaveAttributeAsync("data-total", tenantBefore.ToString(CultureInfo.InvariantCulture));
        Assert.True(long.Parse((await tenantPoints.GetAttributeAsync("data-total"))!, CultureInfo.InvariantCulture) >= tenantBefore + 3);
        await Expect(tenantPoints).ToHaveTextAsync(new Regex(@"^[0-9][0-9.,]*$"));
        await ConsoleFixture.ScreenshotAsync(page, "console-home");

        // The device list agrees (its connectivity is read for the whole page at once).
        await page.GotoAsync("/devices");
        await Expect(page.GetByRole(Microsoft.Playwright.AriaRole.Row).Filter(new() { HasText = "Counter 1" })).ToContainTextAsync("Online");
        await Expect(page.GetByRole(Microsoft.Playwright.AriaRole.Row).Filter(new() { HasText = "Counter 2" })).ToContainTextAsync("Offline");
        await page.Context.CloseAsync();

        // The system administrator sees the broker: the device's connection, and points stored as they come.
        var server = await fixture.NewPageAsync();
        await ConsoleFixture.SignInAsync(server, "sysadmin@taihu.local", ServerProcess.AdminPassword);
        await server.GotoAsync("/");
        await Expect(server.GetByTestId("stat-connections")).ToHaveTextAsync(new Regex("^[1-9]"));
        var points = server.GetByTestId("stat-pointsStored");
        await Expect(points).ToHaveAttributeAsync("data-total", new Regex("^[0-9]+$"));
        var before = await points.GetAttributeAsync("data-total");
        await device.PublishAsync("v1/devices/me/telemetry", "{\"count\":1}");
        await Expect(points).Not.ToHaveAttributeAsync("data-total", before!);
        await Expect(points).ToHaveTextAsync(new Regex(@"^[0-9][0-9.,]*$"));
        await Expect(server.GetByTestId("stat-publishReceived")).ToHaveTextAsync(new Regex(@"^[0-9][0-9.,]*$"));
        Assert.True(long.Parse((await points.GetAttributeAsync("data-total"))!, CultureInfo.InvariantCulture) > long.Parse(before!, CultureInfo.InvariantCulture));
        await server.Context.CloseAsync();
    }
}
