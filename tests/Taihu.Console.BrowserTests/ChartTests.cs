using System.Globalization;
using Microsoft.Playwright;
using Taihu.Console.BrowserTests.Support;
using Taihu.Server.FunctionalTests.Support;
using static Microsoft.Playwright.Assertions;

namespace Taihu.Console.BrowserTests;

[Collection(ConsoleCollection.Name)]
public sealed class ChartTests(ConsoleFixture fixture)
{
    [Fact]
    public async Task Published_values_are_drawn_live_on_the_chart_which_zooms_and_aggregates()
    {
        var (id, token) = await fixture.Admin.CreateDeviceAsync("Chart " + Guid.NewGuid().ToString("N")[..8]);
        var page = await fixture.NewAdminPageAsync();
        await page.GotoAsync($"/devices/{id}");
        await Expect(page.GetByTestId("chart-status")).ToHaveTextAsync("Choose a key to chart.");

        // The device's first value: its key appears, is charted at once, and the point is drawn on the canvas.
        await PublishAsync(token, "{\"temperature\":20}");
        await Expect(page.GetByTestId("chart-status")).ToHaveTextAsync("Points: 1. Latest: temperature 20.");
        await Expect(page.GetByLabel("temperature")).ToBeCheckedAsync();
        await Expect(page.GetByTestId("chart")).ToHaveAttributeAsync("data-drawn", "1");
        Assert.True(await SeriesPixelsAsync(page) > 0, "the point is not drawn in the first series' colour");

        // A second value is appended without reloading.
        await PublishAsync(token, "{\"temperature\":30.5}");
        await Expect(page.GetByTestId("chart-status")).ToHaveTextAsync("Points: 2. Latest: temperature 30.5.");
        await Expect(page.GetByTestId("chart")).ToHaveAttributeAsync("data-drawn", "2");
        await ConsoleFixture.ScreenshotAsync(page.Locator(".mud-paper").Filter(new() { Has = page.GetByTestId("chart") }), "console-chart");

        // Drag zoom, and back.
        var plot = page.Locator("#chart-plot .u-over");
        await plot.ScrollIntoViewIfNeededAsync();
        var box = (await plot.BoundingBoxAsync())!;
        await page.Mouse.MoveAsync(box.X + box.Width * 0.5f, box.Y + box.Height / 2);
        await page.Mouse.DownAsync();
        await page.Mouse.MoveAsync(box.X + box.Width * 0.7f, box.Y + box.Height / 2, new() { Steps = 5 });
        await page.Mouse.UpAsync();
        await Expect(page.GetByTestId("chart")).ToHaveAttributeAsync("data-zoomed", "true");
        await page.GetByRole(AriaRole.Button, new() { Name = "Reset zoom" }).ClickAsync();
        await Expect(page.GetByTestId("chart")).ToHaveAttributeAsync("data-zoomed", "false");

        // A day is drawn from the API's per-minute maxima.
        await page.GetByLabel("Range").SelectOptionAsync("day");
        await page.GetByLabel("Per interval").SelectOptionAsync("MAX");
        await Expect(page.GetByTestId("chart-status")).ToContainTextAsync("temperature 30.5");
        await page.Context.CloseAsync();
    }

    private async Task PublishAsync(string token, string payload)
    {
        var (exit, output) = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", fixture.Server.TcpPort.ToString(CultureInfo.InvariantCulture),
            "-u", token, "-t", "v1/devices/me/telemetry", "-m", payload, "-q", "1");
        Assert.True(exit == 0, output);
    }

    /// <summary>Pixels of the chart's canvas in the first series' colour (#594ae2): the drawn line and points.</summary>
    private static Task<int> SeriesPixelsAsync(IPage page) => page.EvaluateAsync<int>("""
        () => {
          const canvas = document.querySelector('#chart-plot canvas');
          const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
          let count = 0;
          for (let i = 0; i < pixels.length; i += 4) {
            if (Math.abs(pixels[i] - 0x59) < 12 && Math.abs(pixels[i + 1] - 0x4a) < 12 && Math.abs(pixels[i + 2] - 0xe2) < 12 && pixels[i + 3] > 200) count++;
          }
          return count;
        }
        """);
}
