using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.Playwright;
using MQTTnet;
using MQTTnet.Protocol;
using Taihu.Bench.Scenarios;

namespace Taihu.ConsoleBench;

/// <summary>Where the server is and who may make a tenant on it (the system administrator).</summary>
public sealed record ServerOptions(Uri Url, string MqttHost, int MqttPort, string AdminUser, string AdminPassword, string Chromium);

/// <summary>
/// One run's tenant on a running server and a headless chromium signed in to the console as its administrator.
/// Devices publish through MQTTnet as real devices do; <see cref="DisposeAsync"/> deletes the tenant.
/// </summary>
public sealed class BenchServer : IAsyncDisposable
{
    private readonly IPlaywright _playwright;
    private readonly List<IMqttClient> _clients = [];

    private BenchServer(ServerOptions options, HttpClient http, BenchTenant tenant, IPlaywright playwright, IBrowser browser)
    {
        Options = options;
        Http = http;
        Tenant = tenant;
        _playwright = playwright;
        Browser = browser;
    }

    public ServerOptions Options { get; }

    public HttpClient Http { get; }

    public BenchTenant Tenant { get; }

    public IBrowser Browser { get; }

    public static async Task<BenchServer> StartAsync(ServerOptions options, CancellationToken cancellationToken)
    {
        var http = new HttpClient { BaseAddress = options.Url, Timeout = TimeSpan.FromMinutes(5) };
        var tenant = await BenchTenant.CreateAsync(http, options.AdminUser, options.AdminPassword, cancellationToken);
        var playwright = await Playwright.CreateAsync();
        var browser = await playwright.Chromium.LaunchAsync(new BrowserTypeLaunchOptions
        {
            ExecutablePath = options.Chromium,
            Headless = true,
            // Root has no sandbox on these machines.
            Args = ["--no-sandbox"],
        });
        return new BenchServer(options, http, tenant, playwright, browser);
    }

    /// <summary>A new browser context signed in through the console's form as the tenant's administrator.</summary>
    public async Task<IPage> SignedInPageAsync(int width = 1280, int height = 800)
    {
        var context = await Browser.NewContextAsync(new BrowserNewContextOptions
        {
            BaseURL = Options.Url.ToString(),
            ViewportSize = new ViewportSize { Width = width, Height = height },
        });
        var page = await context.NewPageAsync();
        // A script error on the page would make a measurement meaningless: shown as it happens.
        page.PageError += (_, error) => Console.Error.WriteLine("Page error: " + error);
        await page.GotoAsync("/login");
        await page.Locator("input[name='Form.Email']").First.FillAsync(Tenant.AdminEmail);
        await page.Locator("input[name='Form.Password']").First.FillAsync(Tenant.AdminPassword);
        await page.Locator("form button[type=submit]").First.ClickAsync();
        await page.Locator("[data-testid=current-user]").WaitForAsync();
        return page;
    }

    /// <summary>An MQTT connection of a device (its access token as the user name).</summary>
    public async Task<IMqttClient> ConnectDeviceAsync(string token, CancellationToken cancellationToken)
    {
        var client = new MqttClientFactory().CreateMqttClient();
        var options = new MqttClientOptionsBuilder()
            .WithTcpServer(Options.MqttHost, Options.MqttPort)
            .WithClientId("console-bench-" + Guid.NewGuid().ToString("N")[..12])
            .WithCredentials(token, (string?)null)
            .WithKeepAlivePeriod(TimeSpan.FromSeconds(60))
            .Build();
        var result = await client.ConnectAsync(options, cancellationToken);
        if (result.ResultCode != MqttClientConnectResultCode.Success)
        {
            throw new InvalidOperationException($"The server refused the device: CONNACK {result.ResultCode}.");
        }

        _clients.Add(client);
        return client;
    }

    /// <summary>Publishes telemetry at QoS 1 (acknowledged once stored).</summary>
    public static Task PublishAsync(IMqttClient client, string json, CancellationToken cancellationToken) =>
        client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("v1/devices/me/telemetry").WithPayload(Encoding.UTF8.GetBytes(json))
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build(), cancellationToken);

    /// <summary>
    /// Stores <paramref name="count"/> points of <paramref name="key"/> ending now, one every <paramref name="step"/>,
    /// as timestamped telemetry (ThingsBoard's <c>[{"ts":..,"values":{..}}]</c>), 1,000 points to a message.
    /// </summary>
    public static async Task SeedAsync(IMqttClient client, string key, int count, TimeSpan step, CancellationToken cancellationToken)
    {
        var now = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
        var first = now - (long)(step.TotalMilliseconds * (count - 1));
        var json = new StringBuilder();
        for (var i = 0; i < count; i += 1000)
        {
            json.Clear().Append('[');
            for (var j = i; j < Math.Min(count, i + 1000); j++)
            {
                var ts = first + (long)(step.TotalMilliseconds * j);
                var value = 20 + 5 * Math.Sin(j / 300.0) + (j % 7) * 0.1;
                json.Append(j > i ? "," : "").Append(CultureInfo.InvariantCulture, $"{{\"ts\":{ts},\"values\":{{\"{key}\":{value.ToString("0.###", CultureInfo.InvariantCulture)}}}}}");
            }

            await PublishAsync(client, json.Append(']').ToString(), cancellationToken);
        }
    }

    /// <summary>Waits until the API has stored <paramref name="count"/> points of the key (read through the paged history).</summary>
    public async Task WaitForPointsAsync(string deviceId, string key, int count, TimeSpan span, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromMinutes(2);
        while (true)
        {
            var end = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() + 1000;
            var latest = await BenchTenant.SendAsync(Http, HttpMethod.Get, Tenant.AdminToken,
                $"/api/plugins/telemetry/DEVICE/{deviceId}/values/timeseries?keys={key}&startTs={end - (long)span.TotalMilliseconds - 60_000}&endTs={end}&agg=COUNT&interval={(long)span.TotalMilliseconds + 61_000}",
                null, cancellationToken);
            long stored = 0;
            if (latest.ValueKind == JsonValueKind.Object && latest.TryGetProperty(key, out var points))
            {
                foreach (var point in points.EnumerateArray())
                {
                    stored += long.Parse(point.GetProperty("value").ToString(), CultureInfo.InvariantCulture);
                }
            }

            if (stored >= count)
            {
                return;
            }

            if (DateTime.UtcNow > deadline)
            {
                throw new InvalidOperationException($"Only {stored} of {count} points of {key} were stored after two minutes.");
            }

            await Task.Delay(500, cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var client in _clients)
        {
            try
            {
                await client.DisconnectAsync();
            }
            catch (MQTTnet.Exceptions.MqttCommunicationException)
            {
            }

            client.Dispose();
        }

        await Browser.DisposeAsync();
        _playwright.Dispose();
        await Tenant.DeleteAsync();
        Http.Dispose();
    }
}
