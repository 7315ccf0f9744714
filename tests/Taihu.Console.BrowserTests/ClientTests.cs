using Microsoft.Playwright;
using MQTTnet;
using Taihu.Console.BrowserTests.Support;
using Taihu.Server.FunctionalTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class ClientTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task Connected_client_is_listed_with_its_protocol_address_and_subscriptions_and_is_disconnected()
    {
        var (_, token) = await fixture.Admin.CreateDeviceAsync("Valve " + Guid.NewGuid().ToString("N")[..8]);
        var clientId = "valve-" + Guid.NewGuid().ToString("N")[..8];
        await using var device = await DeviceClient.ConnectAsync(fixture.Server, token, clientId: clientId);
        await device.SubscribeAsync("v1/devices/me/attributes");
        await device.SubscribeAsync("v1/devices/me/rpc/request/+");

        var page = await fixture.NewAdminPageAsync();
        page.Dialog += (_, dialog) => dialog.AcceptAsync();
        await page.GotoAsync("/");
        await page.GetByRole(AriaRole.Link, new() { Name = "MQTT clients" }).ClickAsync();
        var row = page.Locator($"tr[data-client='{clientId}']");
        await Expect(row).ToContainTextAsync("5.0");
        await Expect(row).ToContainTextAsync("127.0.0.1");
        await Expect(row).ToContainTextAsync("v1/devices/me/attributes, v1/devices/me/rpc/request/+");
        await ConsoleFixture.ScreenshotAsync(page, "console-clients");

        await row.GetByRole(AriaRole.Button, new() { Name = "Disconnect" }).ClickAsync();
        var ended = await device.Disconnected.WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(MqttClientDisconnectReason.AdministrativeAction, ended.Reason);
        await Expect(row).ToHaveCountAsync(0);
        await page.Context.CloseAsync();
    }
}
