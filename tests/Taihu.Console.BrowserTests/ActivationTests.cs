using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class ActivationTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task Activation_link_opens_a_page_where_the_new_user_sets_a_password_and_is_signed_in()
    {
        var email = $"new-{Guid.NewGuid():N}@example.com";
        var user = await fixture.Admin.PostAsync("/api/user?sendActivationMail=false", new { email, authority = "OPERATOR" });
        var response = await fixture.Admin.SendAsync(HttpMethod.Get, $"/api/user/{user["id"]!["id"]!.GetValue<string>()}/activationLink");
        var link = (await response.Content.ReadAsStringAsync()).Trim();

        var page = await fixture.NewPageAsync();
        await page.GotoAsync(link);
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/activate\\?activateToken="));
        await page.GetByLabel("New password").FillAsync("first-password-1");
        await page.GetByLabel("The same password again").FillAsync("first-password-2");
        await page.GetByRole(AriaRole.Button, new() { Name = "Set password and sign in" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Alert)).ToHaveTextAsync("The two passwords differ; type the same one twice.");

        await page.GetByLabel("New password").FillAsync("first-password-1");
        await page.GetByLabel("The same password again").FillAsync("first-password-1");
        await page.GetByRole(AriaRole.Button, new() { Name = "Set password and sign in" }).ClickAsync();
        await Expect(page.GetByTestId("current-user")).ToHaveTextAsync($"{email} (Operator)");

        // The link works once; the password works from now on.
        await page.GetByTestId("sign-out").ClickAsync();
        await page.GotoAsync(link);
        await page.GetByLabel("New password").FillAsync("second-password-1");
        await page.GetByLabel("The same password again").FillAsync("second-password-1");
        await page.GetByRole(AriaRole.Button, new() { Name = "Set password and sign in" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Alert)).ToContainTextAsync("This activation link is not valid");
        await ConsoleFixture.SignInAsync(page, email, "first-password-1");
        await page.Context.CloseAsync();
    }
}
