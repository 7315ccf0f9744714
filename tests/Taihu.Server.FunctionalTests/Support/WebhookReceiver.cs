using System.Collections.Concurrent;
using System.Net;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>One POST a webhook receiver took: the body parsed, and whether its signature was right.</summary>
public sealed record ReceivedEvent(JsonNode Body, bool SignatureValid, string? ContentType);

/// <summary>
/// A webhook receiver in the test: a Kestrel app on 127.0.0.1 (port 0, or a given port to come back on) that checks
/// <c>X-Taihu-Signature</c> against the secret, answers <see cref="Status"/>, and hands what it took to the test.
/// What it took survives a stop and a start (<see cref="Log"/> is shared by the instances a test makes).
/// </summary>
public sealed class WebhookReceiver : IAsyncDisposable
{
    private readonly WebApplication _app;

    private WebhookReceiver(WebApplication app, int port, ReceiverLog log)
    {
        _app = app;
        Port = port;
        Log = log;
    }

    public int Port { get; }

    public ReceiverLog Log { get; }

    public string Url => $"http://127.0.0.1:{Port}/hook";

    public static async Task<WebhookReceiver> StartAsync(string secret, int port = 0, ReceiverLog? log = null)
    {
        log ??= new ReceiverLog();
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port));
        var app = builder.Build();
        var key = Encoding.UTF8.GetBytes(secret);
        var shared = log;
        app.MapPost("/hook", async (HttpContext context) =>
        {
            using var buffer = new MemoryStream();
            await context.Request.Body.CopyToAsync(buffer);
            var body = buffer.ToArray();
            var expected = "sha256=" + Convert.ToHexStringLower(HMACSHA256.HashData(key, body));
            var valid = context.Request.Headers["X-Taihu-Signature"].ToString() == expected;
            var received = new ReceivedEvent(JsonNode.Parse(body)!, valid, context.Request.ContentType);
            shared.Add(received, context.Request.Headers);
            var status = shared.Status;
            return shared.Reply?.Invoke(received.Body) is { } reply ? Results.Text(reply, "application/json", Encoding.UTF8, status) : Results.StatusCode(status);
        });
        await app.StartAsync();
        var address = new Uri(app.Urls.First());
        return new WebhookReceiver(app, address.Port, log);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>What a receiver took, in arrival order, and a wait for a condition on it.</summary>
public sealed class ReceiverLog
{
    private readonly List<ReceivedEvent> _events = [];
    private readonly List<(Func<IReadOnlyList<ReceivedEvent>, bool> Condition, TaskCompletionSource Done)> _waiters = [];

    /// <summary>The status the receiver answers.</summary>
    public int Status { get; set; } = 200;

    /// <summary>The body answered for an event (null: none), e.g. a reply to a client-side RPC request.</summary>
    public Func<JsonNode, string?>? Reply { get; set; }

    public ConcurrentDictionary<string, string> LastHeaders { get; } = new();

    public void Add(ReceivedEvent received, IHeaderDictionary headers)
    {
        foreach (var (name, value) in headers)
        {
            LastHeaders[name] = value.ToString();
        }

        lock (_events)
        {
            _events.Add(received);
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Condition(_events))
                {
                    _waiters[i].Done.TrySetResult();
                    _waiters.RemoveAt(i);
                }
            }
        }
    }

    public IReadOnlyList<ReceivedEvent> Snapshot()
    {
        lock (_events)
        {
            return [.. _events];
        }
    }

    /// <summary>Completes when <paramref name="condition"/> holds over what was received (within 30 s).</summary>
    public Task WaitAsync(Func<IReadOnlyList<ReceivedEvent>, bool> condition)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_events)
        {
            if (condition(_events))
            {
                return Task.CompletedTask;
            }

            _waiters.Add((condition, done));
        }

        return done.Task.WaitAsync(TimeSpan.FromSeconds(30));
    }
}

/// <summary>Telemetry numbered for the integration tests: point n at <see cref="BaseTs"/> + n, and the numbers read back from events.</summary>
public static class NumberedTelemetry
{
    public static readonly long BaseTs = 1_760_000_000_000;

    /// <summary>Publishes <c>{"ts": BaseTs + n, "values": {"n": n}}</c> with <c>mosquitto_pub -q 1</c>.</summary>
    public static async Task PublishAsync(ServerProcess server, string token, int n)
    {
        ArgumentNullException.ThrowIfNull(server);
        var json = $"{{\"ts\":{(BaseTs + n).ToString(System.Globalization.CultureInfo.InvariantCulture)},\"values\":{{\"n\":{n.ToString(System.Globalization.CultureInfo.InvariantCulture)}}}}}";
        var (exitCode, output) = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", server.TcpPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "-q", "1",
            "-t", "v1/devices/me/telemetry", "-u", token, "-m", json);
        Xunit.Assert.True(exitCode == 0, output);
    }

    /// <summary>The n values of a device's telemetry events, in the order they arrived.</summary>
    public static List<int> Numbers(IReadOnlyList<ReceivedEvent> events, string deviceName)
    {
        ArgumentNullException.ThrowIfNull(events);
        var numbers = new List<int>();
        foreach (var e in events)
        {
            if (e.Body["deviceName"]?.GetValue<string>() == deviceName && e.Body["data"] is JsonArray data)
            {
                foreach (var entry in data)
                {
                    // The platform's own points (the connectivity key "active") come too; only n is the test's.
                    if (entry?["values"]?["n"] is { } n)
                    {
                        numbers.Add(n.GetValue<int>());
                    }
                }
            }
        }

        return numbers;
    }
}
