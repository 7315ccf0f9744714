using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class ApiReferenceTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task OpenApi_document_is_browsable_under_the_console_with_nothing_fetched_from_elsewhere()
    {
        var page = await fixture.NewAdminPageAsync();
        var origin = new Uri(fixture.Server.HttpBaseAddress.ToString()).GetLeftPart(UriPartial.Authority);
        var elsewhere = new List<string>();
        // Anything not from the server itself is refused and remembered: the page must not need a CDN.
        await page.RouteAsync("**/*", route =>
        {
            if (route.Request.Url.StartsWith(origin, StringComparison.Ordinal))
            {
                return route.ContinueAsync();
            }

            elsewhere.Add(route.Request.Url);
            return route.AbortAsync();
        });
        await page.GotoAsync("/");
        await page.GetByRole(AriaRole.Link, new() { Name = "HTTP API" }).ClickAsync();
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/console/api/v1$"));
        // The sidebar lists the API's tags as soon as the document is read (operations below render as they scroll in).
        await Expect(page.GetByText("Telemetry and attributes").First).ToBeVisibleAsync(new() { Timeout = 15_000 });
        Assert.True(elsewhere.Count == 0, "fetched from elsewhere: " + string.Join(", ", elsewhere));
        await page.Context.CloseAsync();
    }
}
