using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

/// <summary>A console address that fails shows a page in words, in the user's language, never a blank page or a stack trace.</summary>
[Collection(ConsoleCollection.Name)]
public sealed class ErrorPageTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task An_address_without_a_page_and_a_page_that_fails_are_told_in_words_with_a_way_back()
    {
        // A user of its own: the language switch below is stored with the user.
        const string password = "error-page-pw";
        var email = await fixture.CreateUserAsync("OPERATOR", password);
        var page = await fixture.NewPageAsync();
        await ConsoleFixture.SignInAsync(page, email, password);

        var missing = await page.GotoAsync("/no-such-page");
        Assert.Equal(404, missing!.Status);
        await Expect(page.GetByTestId("error-title")).ToHaveTextAsync("Page not found");
        await Expect(page.GetByTestId("error")).ToHaveTextAsync("There is no page at this address.");

        // A page that throws (a page number that is not a number cannot be bound): the server's own failure, told
        // as such, nothing of the exception shown.
        var failed = await page.GotoAsync("/devices?page=first");
        Assert.Equal(500, failed!.Status);
        await Expect(page.GetByTestId("error-title")).ToHaveTextAsync("Something went wrong");
        var body = await page.Locator("body").InnerTextAsync();
        Assert.DoesNotContain(" at ", body, StringComparison.Ordinal);
        Assert.DoesNotContain("Exception", body, StringComparison.Ordinal);

        // In the user's language, and the way back leads to the console.
        await page.GotoAsync("/console/language?culture=zh-CN&returnUrl=/no-such-page");
        await Expect(page.GetByTestId("error-title")).ToHaveTextAsync("找不到页面");
        await page.GetByRole(AriaRole.Link, new() { Name = "返回控制台" }).ClickAsync();
        await Expect(page.GetByTestId("current-user")).ToBeVisibleAsync();
        await Expect(page.GetByTestId("current-user")).ToContainTextAsync("(操作员)");

        // The scripts' JSON endpoints and the API keep their problem details.
        var api = await page.APIRequest.GetAsync("/api/no-such-path");
        Assert.Equal(404, api.Status);
        Assert.StartsWith("application/problem+json", api.Headers["content-type"], StringComparison.Ordinal);
        await page.Context.CloseAsync();
    }
}
