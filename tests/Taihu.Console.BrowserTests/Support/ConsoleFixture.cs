using Microsoft.Playwright;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Console.BrowserTests.Support;

/// <summary>
/// One real server process and one headless Debian chromium shared by every browser test (starting either costs
/// seconds on this machine); each test opens its own browser context, so cookies never leak between tests.
/// </summary>
public sealed class ConsoleFixture : IAsyncLifetime
{
    public const string AdminPassword = "tenant-admin-pw";

    private ServerProcess? _server;
    private IPlaywright? _playwright;
    private string? _adminState;

    public ServerProcess Server => _server ?? throw new InvalidOperationException("The server has not started.");

    public IBrowser Browser { get; private set; } = null!;

    public PlatformApi Admin { get; private set; } = null!;

    public string AdminEmail { get; } = $"admin-{Guid.NewGuid():N}@example.com";

    public async Task InitializeAsync()
    {
        _server = await ServerProcess.StartAsync();
        using var sysAdmin = await PlatformApi.SysAdminAsync(_server);
        (_, Admin) = await sysAdmin.CreateTenantWithAdminAsync("Console tenant", AdminEmail, AdminPassword);
        _playwright = await Playwright.CreateAsync();
        Browser = await _playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = "/usr/bin/chromium",
            Headless = true,
            // Root has no sandbox here.
            Args = ["--no-sandbox"],
        });
    }

    /// <summary>A fresh browser context (its own cookies) with a page on the server, in the given time zone (IANA) if any.</summary>
    public async Task<IPage> NewPageAsync(string? timezoneId = null)
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = Server.HttpBaseAddress.ToString(),
            ViewportSize = new ViewportSize { Width = 1280, Height = 800 },
            TimezoneId = timezoneId,
        });
        return await context.NewPageAsync();
    }

    /// <summary>
    /// A fresh browser context already signed in as the fixture's tenant administrator: the session cookie of one
    /// sign-in through the form, reused (signing in costs a second or two per test on this machine; the tests of
    /// signing in itself use <see cref="SignInAsync"/>), at 1280x800 unless told another size.
    /// </summary>
    public async Task<IPage> NewAdminPageAsync(int width = 1280, int height = 800)
    {
        if (_adminState is null)
        {
            var first = await NewPageAsync();
            await SignInAsync(first, AdminEmail, AdminPassword);
            _adminState = await first.Context.StorageStateAsync();
            await first.Context.CloseAsync();
        }

        var context = await Browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = Server.HttpBaseAddress.ToString(),
            ViewportSize = new ViewportSize { Width = width, Height = height },
            StorageState = _adminState,
        });
        return await context.NewPageAsync();
    }

    /// <summary>Signs in through the console's form and waits for the signed-in layout.</summary>
    public static async Task SignInAsync(IPage page, string email, string password)
    {
        await page.GotoAsync("/login");
        await page.GetByLabel("E-mail").FillAsync(email);
        await page.GetByLabel("Password").FillAsync(password);
        await page.GetByRole(AriaRole.Button, new() { Name = "Sign in" }).ClickAsync();
        await Assertions.Expect(page.GetByTestId("current-user")).ToContainTextAsync(email);
    }

    /// <summary>Creates a user of the fixture's tenant with a password, through the API; returns the e-mail.</summary>
    public async Task<string> CreateUserAsync(string authority, string password)
    {
        var email = $"{authority.ToLowerInvariant()}-{Guid.NewGuid():N}@example.com";
        await Admin.PostAsync("/api/user?sendActivationMail=false", new { email, authority, password });
        return email;
    }

    /// <summary>Writes a screenshot to docs/images when TAIHU_SCREENSHOTS=1 (so that CI never rewrites them).</summary>
    public static async Task ScreenshotAsync(IPage page, string name)
    {
        if (ScreenshotPath(name) is { } path)
        {
            await page.ScreenshotAsync(new PageScreenshotOptions { Path = path, Type = ScreenshotType.Png });
        }
    }

    /// <summary>A screenshot of one part of a page (a chart below the fold), as <see cref="ScreenshotAsync(IPage, string)"/>.</summary>
    public static async Task ScreenshotAsync(ILocator part, string name)
    {
        if (ScreenshotPath(name) is { } path)
        {
            await part.ScreenshotAsync(new LocatorScreenshotOptions { Path = path, Type = ScreenshotType.Png });
        }
    }

    private static string? ScreenshotPath(string name)
    {
        if (Environment.GetEnvironmentVariable("TAIHU_SCREENSHOTS") != "1")
        {
            return null;
        }

        var directory = new DirectoryInfo(AppContext.BaseDirectory);
        while (directory is not null && !File.Exists(Path.Combine(directory.FullName, "Taihu.slnx")))
        {
            directory = directory.Parent;
        }

        if (directory is null)
        {
            throw new InvalidOperationException("TAIHU_SCREENSHOTS=1 needs the tests to run inside the repository.");
        }

        var images = Path.Combine(directory.FullName, "docs", "images");
        Directory.CreateDirectory(images);
        return Path.Combine(images, name + ".png");
    }

    public async Task DisposeAsync()
    {
        if (Browser is not null)
        {
            await Browser.DisposeAsync();
        }

        _playwright?.Dispose();
        Admin?.Dispose();
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}

[CollectionDefinition(Name)]
public sealed class ConsoleCollection : ICollectionFixture<ConsoleFixture>
{
    public const string Name = "Console";
}
