using System.Globalization;
using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using Taihu.Server.FunctionalTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class ProfileTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task Profile_gets_a_rule_from_the_form_refuses_bad_json_at_the_field_and_the_rule_raises_an_alarm()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var page = await fixture.NewAdminPageAsync();
        await page.GotoAsync("/device-profiles");
        await page.GetByPlaceholder("Profile name").FillAsync("Boilers " + suffix);
        await page.GetByRole(AriaRole.Button, new() { Name = "Create profile" }).ClickAsync();
        await Expect(page.GetByTestId("profile-name")).ToHaveTextAsync("Boilers " + suffix);
        var profileId = page.Url.Split('/')[^1];

        // The common rule, from the form.
        var form = page.GetByTestId("add-rule");
        await form.Locator("input[name='Rule.Type']").FillAsync("Too hot " + suffix);
        await form.Locator("select[name='Rule.Severity']").SelectOptionAsync("CRITICAL");
        await form.Locator("input[name='Rule.Key']").FillAsync("temperature");
        await form.Locator("select[name='Rule.Operation']").SelectOptionAsync("GREATER");
        await form.Locator("input[name='Rule.Value']").FillAsync("50");
        await form.Locator("select[name='Rule.ClearOperation']").SelectOptionAsync("LESS");
        await form.Locator("input[name='Rule.ClearValue']").FillAsync("40");
        await form.GetByRole(AriaRole.Button, new() { Name = "Add rule" }).ClickAsync();
        var rule = page.Locator($"tr[data-rule='Too hot {suffix}']");
        await Expect(rule).ToContainTextAsync("Critical");
        await Expect(rule).ToContainTextAsync("temperature > 50");
        await Expect(rule).ToContainTextAsync("temperature < 40");

        // The raw JSON with an operation ThingsBoard does not have: the server's message at the field, nothing saved.
        var json = page.Locator("#rules-json-text");
        var text = await json.InputValueAsync();
        await json.FillAsync(text.Replace("\"GREATER\"", "\"GREATER_THAN\"", StringComparison.Ordinal));
        await page.GetByRole(AriaRole.Button, new() { Name = "Save rules" }).ClickAsync();
        await Expect(page.GetByTestId("rules-json-error")).ToContainTextAsync(
            "profileData.alarms[0].createRules.CRITICAL.condition.condition[0].predicate.operation: must be EQUAL, NOT_EQUAL, GREATER, LESS, GREATER_OR_EQUAL or LESS_OR_EQUAL");
        await Expect(json).ToHaveAttributeAsync("aria-invalid", "true");
        await Expect(json).ToHaveValueAsync(new System.Text.RegularExpressions.Regex("GREATER_THAN"));
        await ConsoleFixture.ScreenshotAsync(page.Locator(".mud-paper").Filter(new() { Has = page.GetByTestId("rules-json") }), "console-profile-json");
        var saved = await fixture.Admin.GetAsync($"/api/deviceProfile/{profileId}");
        Assert.Equal("GREATER", saved["profileData"]!["alarms"]![0]!["createRules"]!["CRITICAL"]!["condition"]!["condition"]![0]!["predicate"]!["operation"]!.GetValue<string>());

        // The rule runs: a device of the profile over 50 raises the alarm, shown on its page.
        var device = await fixture.Admin.PostAsync("/api/device", new { name = "Boiler " + suffix, deviceProfileId = new { entityType = "DEVICE_PROFILE", id = profileId } });
        var id = device["id"]!["id"]!.GetValue<string>();
        var token = (await fixture.Admin.GetAsync($"/api/device/{id}/credentials"))["credentialsId"]!.GetValue<string>();
        var (exit, output) = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", fixture.Server.TcpPort.ToString(CultureInfo.InvariantCulture),
            "-u", token, "-t", "v1/devices/me/telemetry", "-m", "{\"temperature\":61}", "-q", "1");
        Assert.True(exit == 0, output);
        await page.GotoAsync($"/devices/{id}");
        await Expect(page.Locator($"tr[data-alarm-type='Too hot {suffix}']")).ToContainTextAsync("temperature is 61");
        await page.Context.CloseAsync();
    }
}
