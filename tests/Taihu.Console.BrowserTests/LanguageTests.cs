using System.Net.Http.Json;
using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using Taihu.Server.FunctionalTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class LanguageTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task Language_switch_shows_the_console_in_Chinese_and_back_in_English_and_is_remembered()
    {
        var name = "Pump " + Guid.NewGuid().ToString("N")[..8];
        var (id, _) = await fixture.Admin.CreateDeviceAsync(name);
        // Wuxi's operators: Chinese, and China's time zone.
        var page = await fixture.NewPageAsync("Asia/Shanghai");

        // The sign-in page has the switch too.
        await page.GotoAsync("/login");
        await page.GetByTestId("language-switch").GetByRole(AriaRole.Link, new() { Name = "中文" }).ClickAsync();
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "登录" })).ToBeVisibleAsync();
        await page.GetByLabel("电子邮箱").FillAsync(fixture.AdminEmail);
        await page.GetByLabel("密码").FillAsync(ConsoleFixture.AdminPassword);
        await page.GetByRole(AriaRole.Button, new() { Name = "登录" }).ClickAsync();
        await Expect(page.GetByTestId("current-user")).ToContainTextAsync("(租户管理员)");
        await Expect(page.Locator("html")).ToHaveAttributeAsync("lang", "zh-CN");

        // Remembered from page to page: a device's page in Chinese.
        await page.GotoAsync($"/devices/{id}");
        await Expect(page.GetByRole(AriaRole.Link, new() { Name = "设备", Exact = true })).ToBeVisibleAsync();
        await Expect(page.GetByText("最新数据")).ToBeVisibleAsync();
        await Expect(page.GetByText("共享属性（下发给设备）")).ToBeVisibleAsync();
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "删除设备" })).ToBeVisibleAsync();
        // Times in the browser's time zone and the page's language, not the server's UTC.
        await page.GotoAsync("/devices?search=" + Uri.EscapeDataString(name));
        var created = page.Locator("tbody time").Last;
        await Expect(created).ToHaveTextAsync(new System.Text.RegularExpressions.Regex("年"));
        var expected = await created.EvaluateAsync<string>(
            "t => new Intl.DateTimeFormat('zh-CN', { dateStyle: 'medium', timeStyle: 'medium', timeZone: 'Asia/Shanghai' }).format(new Date(t.getAttribute('datetime')))");
        await Expect(created).ToHaveTextAsync(expected);
        await page.GotoAsync("/alarms");
        await Expect(page.GetByTestId("no-alarms").Or(page.GetByTestId("alarm-table"))).Not.ToHaveCountAsync(0);
        await Expect(page.GetByRole(AriaRole.Button, new() { Name = "筛选" })).ToBeVisibleAsync();
        await page.GotoAsync($"/devices/{id}");
        await ConsoleFixture.ScreenshotAsync(page, "console-chinese");

        // And back to English, on the same page.
        await page.GetByTestId("language-switch").GetByRole(AriaRole.Link, new() { Name = "English" }).ClickAsync();
        await Expect(page).ToHaveURLAsync(new System.Text.RegularExpressions.Regex($"/devices/{id}$"));
        await Expect(page.GetByText("Latest values")).ToBeVisibleAsync();
        await Expect(page.GetByTestId("current-user")).ToContainTextAsync("(Tenant administrator)");
        await page.Context.CloseAsync();
    }

    [Fact]
    public async Task Language_and_time_zone_are_the_users_and_follow_them_to_another_browser()
    {
        const string password = "travelling-admin-pw";
        var email = await fixture.CreateUserAsync("TENANT_ADMIN", password);
        var name = "Gauge " + Guid.NewGuid().ToString("N")[..8];
        var (deviceId, token) = await fixture.Admin.CreateDeviceAsync(name);
        await PlatformApi.ExpectAsync(await fixture.Admin.Http.PostAsJsonAsync($"/api/v1/{token}/telemetry", new { pressure = 12345.5 }), System.Net.HttpStatusCode.OK);

        // At the office, in Wuxi: switches to Chinese, and chooses to see times in New York's time zone.
        var office = await fixture.NewPageAsync("Asia/Shanghai");
        await ConsoleFixture.SignInAsync(office, email, password);
        await Expect(office.Locator("html")).ToHaveAttributeAsync("lang", "en");
        await office.GetByTestId("language-switch").GetByRole(AriaRole.Link, new() { Name = "中文" }).ClickAsync();
        await Expect(office.GetByTestId("current-user")).ToContainTextAsync("(租户管理员)");
        await office.GetByTestId("current-user").ClickAsync();
        await office.GetByTestId("time-zone").SelectOptionAsync("America/New_York");
        await office.GetByRole(AriaRole.Button, new() { Name = "保存设置" }).ClickAsync();
        await Expect(office.GetByTestId("settings-saved")).ToBeVisibleAsync();
        // Stored with the user, where the API shows it (ThingsBoard's additionalInfo.lang).
        var me = await office.APIRequest.GetAsync("/api/auth/user");
        var info = System.Text.Json.Nodes.JsonNode.Parse(await me.TextAsync())!["additionalInfo"]!;
        Assert.Equal("zh_CN", info["lang"]!.GetValue<string>());
        Assert.Equal("America/New_York", info["timeZone"]!.GetValue<string>());
        await ConsoleFixture.ScreenshotAsync(office, "console-settings");
        await office.GetByTestId("sign-out").ClickAsync();
        await Expect(office).ToHaveURLAsync(new System.Text.RegularExpressions.Regex("/login$"));
        await office.Context.CloseAsync();

        // Another browser (no cookies, in London): the sign-in page is in the browser's English; once signed in,
        // the console is in the user's Chinese, with times in the user's time zone.
        var elsewhere = await fixture.NewPageAsync("Europe/London");
        await ConsoleFixture.SignInAsync(elsewhere, email, password);
        await Expect(elsewhere.Locator("html")).ToHaveAttributeAsync("lang", "zh-CN");
        await Expect(elsewhere.GetByTestId("current-user")).ToContainTextAsync("(租户管理员)");
        await Expect(elsewhere.Locator(".mud-navmenu").GetByRole(AriaRole.Link, new() { Name = "设备", Exact = true })).ToBeVisibleAsync();
        await elsewhere.GotoAsync("/devices?search=" + Uri.EscapeDataString(name));
        var created = elsewhere.Locator("tbody time").Last;
        await Expect(created).ToHaveTextAsync(new System.Text.RegularExpressions.Regex("年"));
        var expected = await created.EvaluateAsync<string>(
            "t => new Intl.DateTimeFormat('zh-CN', { dateStyle: 'medium', timeStyle: 'medium', timeZone: 'America/New_York' }).format(new Date(t.getAttribute('datetime')))");
        await Expect(created).ToHaveTextAsync(expected);

        // A device's latest value: the number in the user's language, its time in the user's time zone.
        await elsewhere.GotoAsync($"/devices/{deviceId}");
        await Expect(elsewhere.GetByTestId("value-pressure")).ToHaveTextAsync("12,345.5");
        var ts = (await fixture.Admin.LatestAsync(deviceId, "pressure"))["pressure"].Ts;
        var stored = await elsewhere.EvaluateAsync<string>(
            "ts => new Intl.DateTimeFormat('zh-CN', { dateStyle: 'medium', timeStyle: 'medium', timeZone: 'America/New_York' }).format(new Date(ts))", ts);
        await Expect(elsewhere.Locator("#latest tr[data-key=pressure] td").Nth(2)).ToHaveTextAsync(stored);
        await elsewhere.Context.CloseAsync();
    }
}
