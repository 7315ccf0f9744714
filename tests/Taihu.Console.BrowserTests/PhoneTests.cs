using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class PhoneTests(ConsoleFixture fixture)
{
    // What is wider than the screen, named, so that a failure says where.
    private const string Overflow = """
        () => {
          const width = window.innerWidth;
          const page = document.scrollingElement.scrollWidth;
          if (page <= width) return '';
          const wide = [...document.querySelectorAll('body *')]
            .filter(e => e.getBoundingClientRect().right > width + 1 && !e.closest('.mud-table-container, .taihu-scroll'))
            .slice(0, 5).map(e => `${e.tagName.toLowerCase()}.${[...e.classList].join('.')} right=${Math.round(e.getBoundingClientRect().right)}`);
          return `scrollWidth ${page} > innerWidth ${width}: ${wide.join('; ')}`;
        }
        """;

    [Fact]
    public async Task At_a_phones_width_the_main_pages_fit_the_screen_and_the_menu_opens_the_navigation()
    {
        var (id, _) = await fixture.Admin.CreateDeviceAsync("Pump at a phone's width " + Guid.NewGuid().ToString("N")[..8]);
        var page = await fixture.NewAdminPageAsync(375, 812);
        foreach (var path in new[] { "/", "/devices", $"/devices/{id}", "/alarms", "/device-profiles", "/integrations", "/clients", "/audit", "/users", "/api-keys", "/settings" })
        {
            await page.GotoAsync(path);
            await Expect(page.GetByTestId("current-user")).ToBeVisibleAsync();
            Assert.True(await page.EvaluateAsync<string>(Overflow) is "", $"{path} is wider than the screen: {await page.EvaluateAsync<string>(Overflow)}");
        }

        // The navigation is folded away behind the menu button; the button opens it, a link in it goes.
        await page.GotoAsync("/");
        var navigation = page.Locator(".mud-navmenu");
        await Expect(navigation).ToBeHiddenAsync();
        await ConsoleFixture.ScreenshotAsync(page, "console-phone");
        await page.GetByTestId("menu").ClickAsync();
        await Expect(page.GetByTestId("menu")).ToHaveAttributeAsync("aria-expanded", "true");
        await Expect(navigation).ToBeVisibleAsync();
        await ConsoleFixture.ScreenshotAsync(page, "console-phone-menu");
        await navigation.GetByRole(AriaRole.Link, new() { Name = "Devices", Exact = true }).ClickAsync();
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/devices$"));
        await Expect(navigation).ToBeHiddenAsync();
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task The_keyboard_reaches_a_device_in_the_list_and_Enter_opens_it()
    {
        var name = "Keyboard pump " + Guid.NewGuid().ToString("N")[..8];
        var (id, _) = await fixture.Admin.CreateDeviceAsync(name);
        var page = await fixture.NewAdminPageAsync();
        await page.GotoAsync("/devices?search=" + Uri.EscapeDataString(name));
        await Expect(page.GetByRole(AriaRole.Link, new() { Name = name })).ToBeVisibleAsync();

        // Tab from the top of the page until the device's link has the focus (every control before it is passed).
        var reached = false;
        for (var presses = 0; presses < 60 && !reached; presses++)
        {
            await page.Keyboard.PressAsync("Tab");
            reached = await page.EvaluateAsync<bool>("name => document.activeElement?.tagName === 'A' && document.activeElement.textContent.trim() === name", name);
        }

        Assert.True(reached, "Tab never reached the device's link.");
        await page.Keyboard.PressAsync("Enter");
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex($"/devices/{id}$"));
        await Expect(page.GetByTestId("device-name")).ToHaveTextAsync(name);
        await page.Context.CloseAsync();
    }
}
