using System.Net.Http.Headers;
using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class ApiKeyTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task Admin_creates_a_key_copies_it_once_uses_it_and_revokes_it()
    {
        var name = "Reports " + Guid.NewGuid().ToString("N")[..8];
        var page = await fixture.NewAdminPageAsync();
        await page.Context.GrantPermissionsAsync(["clipboard-read", "clipboard-write"]);
        page.Dialog += (_, dialog) => dialog.AcceptAsync();
        await page.GotoAsync("/");
        await page.Locator(".mud-navmenu").GetByRole(AriaRole.Link, new() { Name = "API keys", Exact = true }).ClickAsync();

        var form = page.GetByTestId("create-api-key");
        await form.GetByPlaceholder("Key name").FillAsync(name);
        await form.Locator("select").SelectOptionAsync("VIEWER");
        await form.GetByRole(AriaRole.Button, new() { Name = "Create API key" }).ClickAsync();
        var key = (await page.GetByTestId("api-key").TextContentAsync())!.Trim();
        Assert.StartsWith("tk_", key, StringComparison.Ordinal);
        await page.GetByTestId("copy-api-key").ClickAsync();
        await Expect(page.GetByTestId("copy-api-key")).ToHaveAttributeAsync("data-copied", new System.Text.RegularExpressions.Regex("^(clipboard|selection)$"));
        var copied = await page.GetByTestId("copy-api-key").GetAttributeAsync("data-copied") == "clipboard"
            ? await page.EvaluateAsync<string>("navigator.clipboard.readText()")
            : await page.EvaluateAsync<string>("window.getSelection().toString().trim()");
        Assert.Equal(key, copied);
        var row = page.Locator($"tr[data-api-key='{name}']");
        await Expect(row).ToContainTextAsync("Viewer");
        await ConsoleFixture.ScreenshotAsync(page, "console-api-keys");

        // The key works, as a viewer; it is never shown again.
        using var http = new HttpClient { BaseAddress = fixture.Server.HttpBaseAddress };
        async Task<int> ListDevicesAsync()
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/api/tenant/devices?pageSize=1&page=0");
            request.Headers.Add("X-Api-Key", key);
            request.Headers.Accept.Add(new MediaTypeWithQualityHeaderValue("application/json"));
            using var response = await http.SendAsync(request);
            return (int)response.StatusCode;
        }

        Assert.Equal(200, await ListDevicesAsync());
        await page.GotoAsync("/api-keys");
        await Expect(row).ToBeVisibleAsync();
        await Expect(page.GetByTestId("api-key")).ToHaveCountAsync(0);
        Assert.DoesNotContain(key, await page.ContentAsync(), StringComparison.Ordinal);

        await row.GetByRole(AriaRole.Button, new() { Name = "Revoke" }).ClickAsync();
        await Expect(row).ToHaveCountAsync(0);
        Assert.Equal(401, await ListDevicesAsync());
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Operator_has_no_api_keys_page_and_is_told_why()
    {
        const string password = "operator-password-4";
        var email = await fixture.CreateUserAsync("OPERATOR", password);
        var page = await fixture.NewPageAsync();
        await ConsoleFixture.SignInAsync(page, email, password);
        await Expect(page.Locator(".mud-navmenu").GetByRole(AriaRole.Link, new() { Name = "API keys", Exact = true })).ToHaveCountAsync(0);
        await page.GotoAsync("/api-keys");
        await Expect(page.GetByTestId("error")).ToBeVisibleAsync();
        await Expect(page.GetByTestId("create-api-key")).ToHaveCountAsync(0);
        Assert.Equal(403, (await page.APIRequest.GetAsync("/api/apiKeys")).Status);
        await page.Context.CloseAsync();
    }
}
