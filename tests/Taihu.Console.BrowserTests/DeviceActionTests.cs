using System.Text.Json.Nodes;
using Microsoft.Playwright;
using MQTTnet;
using Taihu.Console.BrowserTests.Support;
using Taihu.Server.FunctionalTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

/// <summary>What an operator does to a device from its page: shared attributes and RPC, received by a real MQTT device.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class DeviceActionTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task Attributes_are_shown_by_scope_and_an_edited_shared_attribute_reaches_the_device()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("Thermostat " + Guid.NewGuid().ToString("N")[..8]);
        await fixture.Admin.PostAsync($"/api/plugins/telemetry/DEVICE/{id}/attributes/SERVER_SCOPE", new { room = "B-204" });
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        await device.SubscribeAsync("v1/devices/me/attributes");

        var page = await fixture.NewAdminPageAsync();
        await page.GotoAsync($"/devices/{id}");
        await Expect(page.GetByTestId("attribute-SERVER_SCOPE-room")).ToHaveTextAsync("B-204");

        var form = page.GetByTestId("shared-form");
        await form.GetByLabel("Attribute key").FillAsync("targetTemperature");
        await form.GetByLabel("Attribute value").FillAsync("22.5");
        await form.GetByRole(AriaRole.Button, new() { Name = "Save shared attribute" }).ClickAsync();
        await Expect(page.GetByTestId("shared-status")).ToHaveTextAsync("Saved and sent to the device.");

        var pushed = await device.NextAsync();
        Assert.Equal("v1/devices/me/attributes", pushed.Topic);
        Assert.Equal(22.5, JsonNode.Parse(pushed.ConvertPayloadToString())!["targetTemperature"]!.GetValue<double>());
        await Expect(page.GetByTestId("attribute-SHARED_SCOPE-targetTemperature")).ToHaveTextAsync("22.5");

        // Stored: a fresh page shows it from the server.
        await page.ReloadAsync();
        await Expect(page.GetByTestId("attribute-SHARED_SCOPE-targetTemperature")).ToHaveTextAsync("22.5");
        await ConsoleFixture.ScreenshotAsync(page.Locator(".mud-paper").Filter(new() { Has = page.GetByTestId("shared-form") }), "console-attributes");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Rpc_two_way_is_answered_by_the_device_one_way_is_delivered_and_a_persistent_call_shows_its_state()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("Lamp " + Guid.NewGuid().ToString("N")[..8]);
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token);
        await device.SubscribeAsync("v1/devices/me/rpc/request/+");

        var page = await fixture.NewAdminPageAsync();
        await page.GotoAsync($"/devices/{id}");
        var form = page.GetByTestId("rpc-form");

        // Two-way: the device answers on the response topic of the request's id; the reply is shown.
        await form.GetByLabel("Method").FillAsync("getBrightness");
        await form.GetByLabel("Parameters (JSON)").FillAsync("{\"lamp\":2}");
        await form.GetByRole(AriaRole.Button, new() { Name = "Send" }).ClickAsync();
        var request = await device.NextAsync();
        Assert.StartsWith("v1/devices/me/rpc/request/", request.Topic, StringComparison.Ordinal);
        var body = JsonNode.Parse(request.ConvertPayloadToString())!;
        Assert.Equal("getBrightness", body["method"]!.GetValue<string>());
        Assert.Equal(2, body["params"]!["lamp"]!.GetValue<int>());
        await device.PublishAsync("v1/devices/me/rpc/response/" + request.Topic.Split('/')[^1], "{\"brightness\":80}");
        await Expect(page.GetByTestId("rpc-status")).ToHaveTextAsync("The device replied:");
        await Expect(page.GetByTestId("rpc-reply")).ToContainTextAsync("\"brightness\": 80");
        await ConsoleFixture.ScreenshotAsync(page.Locator(".mud-paper").Filter(new() { Has = form }), "console-rpc");

        // One-way: done once the device has it.
        await form.GetByLabel("Method").FillAsync("setBrightness");
        await form.GetByLabel("Kind").SelectOptionAsync("oneway");
        await form.GetByRole(AriaRole.Button, new() { Name = "Send" }).ClickAsync();
        await Expect(page.GetByTestId("rpc-status")).ToHaveTextAsync("Delivered to the device.");
        Assert.Equal("setBrightness", JsonNode.Parse((await device.NextAsync()).ConvertPayloadToString())!["method"]!.GetValue<string>());

        // Persistent one-way: stored, sent, and its state followed to the end.
        await form.GetByLabel("Method").FillAsync("setSchedule");
        await form.GetByLabel("Persistent").CheckAsync();
        await form.GetByRole(AriaRole.Button, new() { Name = "Send" }).ClickAsync();
        await Expect(form).ToHaveAttributeAsync("data-rpc-status", "SUCCESSFUL");
        await Expect(page.GetByTestId("rpc-status")).ToContainTextAsync(": done.");
        Assert.Equal("setSchedule", JsonNode.Parse((await device.NextAsync()).ConvertPayloadToString())!["method"]!.GetValue<string>());
        await page.Context.CloseAsync();
    }
}
