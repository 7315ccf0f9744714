using System.Globalization;
using System.Net;
using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using Taihu.Server.FunctionalTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class DeviceTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task Created_device_shows_its_token_and_a_published_value_appears_live()
    {
        var page = await fixture.NewPageAsync();
        await page.Context.GrantPermissionsAsync(["clipboard-read", "clipboard-write"]);
        await ConsoleFixture.SignInAsync(page, fixture.AdminEmail, ConsoleFixture.AdminPassword);
        await page.GotoAsync("/devices");
        var name = "Sensor " + Guid.NewGuid().ToString("N")[..8];
        await page.GetByPlaceholder("Name", new() { Exact = true }).FillAsync(name);
        await page.GetByRole(AriaRole.Button, new() { Name = "Create device" }).ClickAsync();
        await Expect(page.GetByTestId("device-name")).ToHaveTextAsync(name);

        // The token shown is the device's credential, as the API reports it.
        var token = (await page.GetByTestId("access-token").TextContentAsync())!.Trim();
        var deviceId = Guid.Parse(page.Url.Split('/')[^1], CultureInfo.InvariantCulture);
        var credentials = await fixture.Admin.GetAsync($"/api/device/{deviceId}/credentials");
        Assert.Equal(credentials["credentialsId"]!.GetValue<string>(), token);
        await page.GetByTestId("copy-token").ClickAsync();
        // The button copies to the clipboard, or, where the browser refuses the clipboard, selects the token for Ctrl+C.
        await Expect(page.GetByTestId("copy-token")).ToHaveAttributeAsync("data-copied", new System.Text.RegularExpressions.Regex("^(clipboard|selection)$"));
        var copied = await page.GetByTestId("copy-token").GetAttributeAsync("data-copied") == "clipboard"
            ? await page.EvaluateAsync<string>("navigator.clipboard.readText()")
            : await page.EvaluateAsync<string>("window.getSelection().toString().trim()");
        Assert.Equal(token, copied);
        await Expect(page.GetByTestId("publish-line")).ToContainTextAsync($"-u {token} -t v1/devices/me/telemetry");

        // A value published with Mosquitto's client appears without reloading the page.
        await Expect(page.GetByText("No values yet.")).ToBeVisibleAsync();
        var (exit, output) = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", fixture.Server.TcpPort.ToString(CultureInfo.InvariantCulture),
            "-u", token, "-t", "v1/devices/me/telemetry", "-m", "{\"temperature\":25.5}", "-q", "1");
        Assert.True(exit == 0, output);
        await Expect(page.GetByTestId("value-temperature")).ToHaveTextAsync("25.5");
        await ConsoleFixture.ScreenshotAsync(page, "console-device");

        // Its connectivity (the section is live): mosquitto_pub connected and disconnected, and the device became
        // active (it stays active until its inactivity timeout, as in ThingsBoard), each with its time.
        var history = page.GetByTestId("connectivity-history").Locator("tbody tr");
        await Expect(history).ToHaveCountAsync(1, new() { Timeout = 20_000 });
        await Expect(history.Nth(0)).ToContainTextAsync("Online");
        await Expect(page.GetByTestId("connectivity-lastConnectTime").Locator("time")).ToHaveCountAsync(1, new() { Timeout = 20_000 });
        await Expect(page.GetByTestId("connectivity-lastDisconnectTime").Locator("time")).ToHaveCountAsync(1, new() { Timeout = 20_000 });

        // The list shows it, found by search.
        await page.GotoAsync("/devices?search=" + Uri.EscapeDataString(name));
        await Expect(page.GetByRole(AriaRole.Link, new() { Name = name })).ToBeVisibleAsync();
        await ConsoleFixture.ScreenshotAsync(page, "console-devices");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Viewer_cannot_create_a_device_in_the_page_or_by_posting_the_form()
    {
        const string password = "viewer-password-1";
        var email = await fixture.CreateUserAsync("VIEWER", password);
        var page = await fixture.NewPageAsync();
        await ConsoleFixture.SignInAsync(page, email, password);
        await page.GotoAsync("/devices");
        await Expect(page.GetByTestId("device-table")).ToBeVisibleAsync();
        await Expect(page.GetByTestId("create-device")).ToHaveCountAsync(0);

        // The form posted anyway, with the session's own antiforgery token: the server refuses it.
        var antiforgery = await page.Locator("input[name=__RequestVerificationToken]").First.GetAttributeAsync("value");
        var name = "Forbidden " + Guid.NewGuid().ToString("N")[..8];
        var response = await page.APIRequest.PostAsync("/devices", new APIRequestContextOptions
        {
            Form = page.APIRequest.CreateFormData()
                .Append("_handler", "create-device")
                .Append("__RequestVerificationToken", antiforgery!)
                .Append("NewDevice.Name", name),
            MaxRedirects = 0,
        });
        Assert.NotEqual((int)HttpStatusCode.Redirect, response.Status);
        var devices = await fixture.Admin.GetAsync("/api/tenant/devices?pageSize=100&page=0&textSearch=" + Uri.EscapeDataString(name));
        Assert.Empty(devices["data"]!.AsArray());
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Device_is_edited_from_its_page_and_a_refused_edit_shows_the_server_message()
    {
        var suffix = Guid.NewGuid().ToString("N")[..8];
        var (id, _) = await fixture.Admin.CreateDeviceAsync("To edit " + suffix);
        await fixture.Admin.CreateDeviceAsync("Taken " + suffix);
        var profile = await fixture.Admin.PostAsync("/api/deviceProfile", new { name = "Pumps " + suffix });
        var page = await fixture.NewAdminPageAsync();
        await page.GotoAsync($"/devices/{id}");

        await page.GetByText("Edit the device").ClickAsync();
        var form = page.GetByTestId("edit-device");
        await form.GetByLabel("Name").FillAsync("Pump " + suffix);
        await form.GetByLabel("Type").FillAsync("pump");
        await form.GetByLabel("Label").FillAsync("Basement");
        await form.GetByLabel("Profile").SelectOptionAsync(new SelectOptionValue { Label = "Pumps " + suffix });
        await form.GetByRole(AriaRole.Button, new() { Name = "Save" }).ClickAsync();
        await Expect(page.GetByTestId("device-name")).ToHaveTextAsync("Pump " + suffix);
        await Expect(page.GetByTestId("device-summary")).ToHaveTextAsync($"Type: pump · Label: Basement · Profile: Pumps {suffix}");
        var device = await fixture.Admin.GetAsync($"/api/device/{id}");
        Assert.Equal(("Pump " + suffix, "pump", "Basement"), (device["name"]!.GetValue<string>(), device["type"]!.GetValue<string>(), device["label"]!.GetValue<string>()));
        Assert.Equal(profile["id"]!["id"]!.GetValue<string>(), device["deviceProfileId"]!["id"]!.GetValue<string>());

        // Another device's name: the platform refuses, and says why on the page.
        await page.GetByText("Edit the device").ClickAsync();
        await form.GetByLabel("Name").FillAsync("Taken " + suffix);
        await form.GetByRole(AriaRole.Button, new() { Name = "Save" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("Taken " + suffix);
        await Expect(page.GetByTestId("device-name")).ToHaveTextAsync("Pump " + suffix);
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Device_is_deleted_from_its_page()
    {
        var (id, _) = await fixture.Admin.CreateDeviceAsync("To delete " + Guid.NewGuid().ToString("N")[..8]);
        var page = await fixture.NewAdminPageAsync();
        await page.GotoAsync($"/devices/{id}");
        await page.GetByRole(AriaRole.Button, new() { Name = "Delete device" }).ClickAsync();
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/devices$"));
        Assert.Equal(HttpStatusCode.NotFound, (await fixture.Admin.SendAsync(HttpMethod.Get, $"/api/device/{id}")).StatusCode);

        // The server's error for a device that is gone is shown on the page.
        await page.GotoAsync($"/devices/{id}");
        await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("not found");
        await page.Context.CloseAsync();
    }
}
