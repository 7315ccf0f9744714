using System.Globalization;
using System.Text.Json.Nodes;
using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using Taihu.Server.FunctionalTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class AlarmTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task Alarm_raised_by_telemetry_appears_live_and_is_acknowledged_and_cleared_in_the_browser()
    {
        // A profile with the rules.md example's Overheat rule, and a device of it.
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var profile = await fixture.Admin.PostAsync("/api/deviceProfile", JsonNode.Parse("""
            {"name": "Boilers SUFFIX", "profileData": {"alarms": [
              {"id": "overheat", "alarmType": "Overheat SUFFIX",
               "createRules": {"CRITICAL": {"condition": {"condition": [{"key": {"type": "TIME_SERIES", "key": "temperature"}, "valueType": "NUMERIC",
                  "predicate": {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 50}}}], "spec": {"type": "SIMPLE"}},
                  "alarmDetails": "Temperature is ${temperature}"}}}]}}
            """.Replace("SUFFIX", suffix, StringComparison.Ordinal))!);
        var device = await fixture.Admin.PostAsync("/api/device", new
        {
            name = "Boiler " + suffix,
            deviceProfileId = new { entityType = "DEVICE_PROFILE", id = profile["id"]!["id"]!.GetValue<string>() },
        });
        var id = device["id"]!["id"]!.GetValue<string>();
        var token = (await fixture.Admin.GetAsync($"/api/device/{id}/credentials"))["credentialsId"]!.GetValue<string>();

        var page = await fixture.NewAdminPageAsync();
        await page.GotoAsync($"/devices/{id}");
        var section = page.GetByTestId("device-alarms");
        await Expect(section.GetByTestId("no-alarms")).ToBeVisibleAsync();

        // Over 50: the rule raises the alarm, and the open page shows it without a reload.
        var (exit, output) = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", fixture.Server.TcpPort.ToString(CultureInfo.InvariantCulture),
            "-u", token, "-t", "v1/devices/me/telemetry", "-m", "{\"temperature\":55}", "-q", "1");
        Assert.True(exit == 0, output);
        var row = section.Locator($"tr[data-alarm-type='Overheat {suffix}']");
        await Expect(row.GetByTestId("alarm-status")).ToHaveTextAsync("Active, not acknowledged");
        await Expect(row).ToContainTextAsync("Critical");
        await Expect(row).ToContainTextAsync("Temperature is 55");

        await row.GetByRole(AriaRole.Button, new() { Name = "Assign to me" }).ClickAsync();
        await Expect(row.GetByTestId("alarm-assignee")).ToHaveTextAsync(fixture.AdminEmail);
        await row.GetByRole(AriaRole.Button, new() { Name = "Unassign" }).ClickAsync();
        await Expect(row.GetByTestId("alarm-assignee")).ToHaveTextAsync("");
        await row.GetByRole(AriaRole.Button, new() { Name = "Acknowledge" }).ClickAsync();
        await Expect(row.GetByTestId("alarm-status")).ToHaveTextAsync("Active, acknowledged");
        await Expect(row.GetByRole(AriaRole.Button, new() { Name = "Acknowledge" })).ToHaveCountAsync(0);

        // The tenant's Alarms page: active ones by default, filtered by severity; cleared there.
        await page.GotoAsync("/alarms?severity=CRITICAL");
        var listed = page.Locator($"tr[data-alarm-type='Overheat {suffix}']");
        await Expect(listed).ToContainTextAsync("Boiler " + suffix);
        await ConsoleFixture.ScreenshotAsync(page, "console-alarms");
        await page.Locator("select[name=severity]").SelectOptionAsync("MINOR");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("severity=MINOR"));
        await Expect(listed).ToHaveCountAsync(0);
        // By type and by device (their exact names); a device that does not exist is told.
        await page.GotoAsync("/alarms");
        var filter = page.GetByTestId("alarm-filter");
        await filter.GetByLabel("Type", new() { Exact = true }).FillAsync("Overheat " + suffix);
        await filter.GetByLabel("Device", new() { Exact = true }).FillAsync("Boiler " + suffix);
        await filter.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        await Expect(listed).ToContainTextAsync("Boiler " + suffix);
        await Expect(page.Locator("[data-testid=alarm-table] tbody tr")).ToHaveCountAsync(1);
        await filter.GetByLabel("Type", new() { Exact = true }).FillAsync("Underheat " + suffix);
        await filter.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        await Expect(page.GetByTestId("no-alarms")).ToBeVisibleAsync();
        await filter.GetByLabel("Type", new() { Exact = true }).FillAsync("");
        await filter.GetByLabel("Device", new() { Exact = true }).FillAsync("Nobody " + suffix);
        await filter.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        await Expect(page.GetByTestId("no-such-device")).ToHaveTextAsync($"No device is named \"Nobody {suffix}\".");
        await page.GotoAsync("/alarms?severity=CRITICAL&search=" + Uri.EscapeDataString(suffix));
        await listed.GetByRole(AriaRole.Button, new() { Name = "Clear" }).ClickAsync();
        // Cleared: gone from the active alarms, shown under Cleared.
        await Expect(listed).ToHaveCountAsync(0);
        await page.Locator("select[name=status]").SelectOptionAsync("CLEARED");
        await page.GetByRole(AriaRole.Button, new() { Name = "Filter" }).ClickAsync();
        await Expect(listed.GetByTestId("alarm-status")).ToHaveTextAsync("Cleared, acknowledged");

        var alarms = await fixture.Admin.GetAsync($"/api/alarm/DEVICE/{id}?searchStatus=ANY&pageSize=10&page=0");
        Assert.Equal("CLEARED_ACK", alarms["data"]![0]!["status"]!.GetValue<string>());
        await page.Context.CloseAsync();
    }
}
