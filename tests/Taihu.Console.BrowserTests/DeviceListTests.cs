using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class DeviceListTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task Device_list_searches_as_you_type_pages_and_sorts()
    {
        var prefix = "Pump-" + Guid.NewGuid().ToString("N")[..6] + "-";
        for (var i = 0; i < 21; i++)
        {
            await fixture.Admin.CreateDeviceAsync(prefix + i.ToString("00", System.Globalization.CultureInfo.InvariantCulture));
        }

        var page = await fixture.NewAdminPageAsync();
        await page.GotoAsync("/devices");
        await page.GetByRole(AriaRole.Searchbox).FillAsync(prefix);
        await page.GetByRole(AriaRole.Button, new() { Name = "Search" }).ClickAsync();
        await Expect(page.GetByText("Page 1 of 2 (21 devices)")).ToBeVisibleAsync();
        var rows = page.GetByTestId("device-table").Locator("tbody tr");
        await Expect(rows).ToHaveCountAsync(20);
        await Expect(rows.First).ToContainTextAsync(prefix + "00");

        await page.GetByRole(AriaRole.Link, new() { Name = "Next" }).ClickAsync();
        await Expect(page.GetByText("Page 2 of 2 (21 devices)")).ToBeVisibleAsync();
        await Expect(rows).ToHaveCountAsync(1);
        await Expect(rows.First).ToContainTextAsync(prefix + "20");

        // Name again sorts descending: the last name comes first.
        await page.GotoAsync("/devices?search=" + Uri.EscapeDataString(prefix));
        await page.GetByRole(AriaRole.Link, new() { Name = "Name ↑" }).ClickAsync();
        await Expect(rows.First).ToContainTextAsync(prefix + "20");
        await Expect(rows.First).ToContainTextAsync("Offline");

        // Search as you type: the results follow the text without pressing Search, and the address with them.
        await page.GotoAsync("/devices");
        await page.GetByRole(AriaRole.Searchbox).PressSequentiallyAsync(prefix + "1");
        await Expect(page.GetByText("Page 1 of 1 (10 devices)")).ToBeVisibleAsync();
        await Expect(rows).ToHaveCountAsync(10);
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("search=" + System.Text.RegularExpressions.Regex.Escape(Uri.EscapeDataString(prefix + "1"))));
        await page.Context.CloseAsync();
    }
}
