using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json.Nodes;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// HTTP webhook integrations against the real server: a receiver in the test checks the signature, sees a device's
/// events in order after <c>mosquitto_pub -q 1</c>, and gets every event after it was down; a 400 dead-letters at
/// once and the dead letter is listed and replayed through the API; bad input is refused naming the field.
/// </summary>
public sealed class IntegrationWebhookTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    private const string Secret = "webhook-secret-1";

    private ServerProcess Server => fixture.Server;

    [Fact]
    public async Task Webhook_SignedEventsInOrder_AndEveryEventAfterTheReceiverWasDown()
    {
        var log = new ReceiverLog();
        var receiver = await WebhookReceiver.StartAsync(Secret, log: log);
        var port = receiver.Port;
        var name = "pump-" + Guid.NewGuid().ToString("N")[..8];
        var (deviceId, token) = await fixture.Admin.CreateDeviceAsync(name);
        var integration = await CreateWebhookAsync(receiver.Url, new Dictionary<string, string> { ["X-City"] = "taihu" });
        try
        {
            for (var n = 0; n < 5; n++)
            {
                await NumberedTelemetry.PublishAsync(Server, token, n);
            }

            await log.WaitAsync(events => NumberedTelemetry.Numbers(events, name).Distinct().Count() == 5);
            var first = log.Snapshot().Where(e => e.Body["deviceName"]!.GetValue<string>() == name).ToList();
            Assert.All(first, e => Assert.True(e.SignatureValid, "The X-Taihu-Signature header does not match the body."));
            Assert.All(first, e => Assert.Equal("application/json", e.ContentType));
            Assert.Equal("taihu", log.LastHeaders["X-City"]);
            var sample = first[0].Body;
            Assert.Equal("TELEMETRY", sample["type"]!.GetValue<string>());
            Assert.Equal(deviceId.ToString(), sample["deviceId"]!.GetValue<string>());
            Assert.Equal(fixture.TenantId.ToString(), sample["tenantId"]!.GetValue<string>());
            Assert.True(Guid.TryParse(sample["id"]!.GetValue<string>(), out _));
            Assert.Equal([0, 1, 2, 3, 4], FirstSeenOrder(NumberedTelemetry.Numbers(log.Snapshot(), name)));

            // The receiver goes down: its port now accepts connections and closes them at once (what a crashed
            // receiver behind a proxy looks like), so the test sees the server's failed attempts.
            await receiver.DisposeAsync();
            using var down = new TcpListener(IPAddress.Loopback, port);
            down.Start();
            for (var n = 5; n < 10; n++)
            {
                await NumberedTelemetry.PublishAsync(Server, token, n);
            }

            using (var refused = await down.AcceptTcpClientAsync().WaitAsync(TimeSpan.FromSeconds(30)))
            {
                refused.Client.Close();
            }

            var failed = await fixture.Admin.EventuallyAsync($"/api/integration/{integration}/stats", s => s["failed"]!.GetValue<long>() > 0 && s["outboxSize"]!.GetValue<long>() > 0);
            Assert.True(failed["lagMs"]!.GetValue<long>() >= 0);
            down.Stop();

            // Back on the same port: every event arrives, in order; duplicates are allowed (at least once) and counted.
            receiver = await WebhookReceiver.StartAsync(Secret, port, log);
            await log.WaitAsync(events => NumberedTelemetry.Numbers(events, name).Distinct().Count() == 10);
            var numbers = NumberedTelemetry.Numbers(log.Snapshot(), name);
            Assert.Equal(Enumerable.Range(0, 10), FirstSeenOrder(numbers));
            Assert.All(log.Snapshot(), e => Assert.True(e.SignatureValid));
            var ids = log.Snapshot().Select(e => e.Body["id"]!.GetValue<string>()).ToList();
            Console.WriteLine($"Webhook after a stop: {numbers.Count} points received for 10 sent, {ids.Count - ids.Distinct().Count()} duplicate POSTs.");

            var stats = await fixture.Admin.EventuallyAsync($"/api/integration/{integration}/stats", s => s["outboxSize"]!.GetValue<long>() == 0);
            Assert.Equal(0, stats["retrying"]!.GetValue<long>());
            Assert.Equal(0, stats["dead"]!.GetValue<long>());
            Assert.True(stats["sent"]!.GetValue<long>() >= 2);
            var metrics = await fixture.Admin.Http.GetStringAsync(new Uri("/metrics", UriKind.Relative));
            Assert.Contains($"integration=\"{integration}\"", metrics, StringComparison.Ordinal);
        }
        finally
        {
            await receiver.DisposeAsync();
            await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/integration/{integration}");
        }
    }

    [Fact]
    public async Task Webhook_400_DeadLettersAtOnce_AndTheDeadLetterIsListedAndReplayed()
    {
        var log = new ReceiverLog { Status = 400 };
        await using var receiver = await WebhookReceiver.StartAsync(Secret, log: log);
        var name = "valve-" + Guid.NewGuid().ToString("N")[..8];
        var (_, token) = await fixture.Admin.CreateDeviceAsync(name);
        var integration = await CreateWebhookAsync(receiver.Url);
        await NumberedTelemetry.PublishAsync(Server, token, 42);
        await log.WaitAsync(events => NumberedTelemetry.Numbers(events, name).Contains(42));

        var dead = await fixture.Admin.EventuallyAsync($"/api/integration/{integration}/deadLetters?pageSize=10&page=0", p => p["totalElements"]!.GetValue<long>() == 1);
        var letter = dead["data"]![0]!;
        Assert.Equal(400, letter["lastStatus"]!.GetValue<int>());
        Assert.Equal(1, letter["attempts"]!.GetValue<int>());
        Assert.Contains("400", letter["reason"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(name, letter["event"]!["deviceName"]!.GetValue<string>());
        var eventId = letter["event"]!["id"]!.GetValue<string>();

        // The receiver is fixed; the dead letter is replayed and arrives with the same id.
        log.Status = 200;
        var replayed = await fixture.Admin.PostAsync($"/api/integration/{integration}/deadLetters/{letter["id"]!.GetValue<string>()}/replay", new { });
        Assert.Equal(1, replayed["replayed"]!.GetValue<int>());
        await log.WaitAsync(events => events.Count(e => e.Body["id"]!.GetValue<string>() == eventId) == 2);
        await fixture.Admin.EventuallyAsync($"/api/integration/{integration}/stats", s => s["outboxSize"]!.GetValue<long>() == 0 && s["dead"]!.GetValue<long>() == 0);
        Assert.Equal(0, (await fixture.Admin.GetAsync($"/api/integration/{integration}/deadLetters"))["totalElements"]!.GetValue<long>());
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/integration/{integration}/deadLetters/{Guid.NewGuid()}/replay"), HttpStatusCode.NotFound);

        var audit = await fixture.Admin.GetAsync("/api/audit/logs?pageSize=100&page=0");
        Assert.Contains(audit["data"]!.AsArray(), entry => entry!["entityId"]?["id"]?.GetValue<string>() == integration);
    }

    [Fact]
    public async Task Integration_Api_RefusesBadInput_NamingTheField_AndHidesTheSecret()
    {
        async Task<string> RefusedAsync(object body)
        {
            var problem = await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Post, "/api/integration", body), HttpStatusCode.BadRequest);
            return problem["message"]!.GetValue<string>();
        }

        Assert.Contains("type", await RefusedAsync(new { name = "x", type = "SMTP", configuration = new { url = "http://127.0.0.1:1/", secret = "s" } }), StringComparison.Ordinal);
        Assert.Contains("configuration.url", await RefusedAsync(new { name = "x", type = "HTTP", configuration = new { url = "ftp://example.com/", secret = "s" } }), StringComparison.Ordinal);
        Assert.Contains("configuration.secret", await RefusedAsync(new { name = "x", type = "HTTP", configuration = new { url = "http://127.0.0.1:1/" } }), StringComparison.Ordinal);
        Assert.Contains("{city}", await RefusedAsync(new { name = "x", type = "MQTT", configuration = new { topic = "city/{city}/{deviceName}" } }), StringComparison.Ordinal);
        Assert.Contains("messageTypes[0]", await RefusedAsync(new { name = "x", type = "HTTP", messageTypes = new[] { "EMAIL" }, configuration = new { url = "http://127.0.0.1:1/", secret = "s" } }), StringComparison.Ordinal);

        var created = await fixture.Admin.PostAsync("/api/integration", new { name = "hidden-" + Guid.NewGuid().ToString("N")[..6], type = "HTTP", configuration = new { url = "http://127.0.0.1:1/", secret = "a-long-secret-value" } });
        var id = created["id"]!["id"]!.GetValue<string>();
        Assert.Equal("a-******", created["configuration"]!["secret"]!.GetValue<string>());
        Assert.Equal(86_400_000, created["configuration"]!["retryLimitMs"]!.GetValue<long>());
        var listed = await fixture.Admin.GetAsync("/api/integrations?pageSize=100&page=0&textSearch=hidden");
        Assert.Contains(listed["data"]!.AsArray(), i => i!["id"]!["id"]!.GetValue<string>() == id);

        // Another tenant's administrator neither sees nor changes it.
        var (_, other) = await fixture.SysAdmin.CreateTenantWithAdminAsync("Other " + Guid.NewGuid().ToString("N")[..6]);
        using (other)
        {
            await PlatformApi.ExpectProblemAsync(await other.SendAsync(HttpMethod.Get, $"/api/integration/{id}"), HttpStatusCode.NotFound);
            await PlatformApi.ExpectProblemAsync(await other.SendAsync(HttpMethod.Post, "/api/integration",
                new { id = new { entityType = "INTEGRATION", id }, name = "taken", type = "HTTP", configuration = new { url = "http://127.0.0.1:1/", secret = "s" } }), HttpStatusCode.NotFound);
            await PlatformApi.ExpectProblemAsync(await other.SendAsync(HttpMethod.Delete, $"/api/integration/{id}"), HttpStatusCode.NotFound);
        }

        // Posting the masked secret back keeps the stored one.
        var updated = await fixture.Admin.PostAsync("/api/integration", new
        {
            id = new { entityType = "INTEGRATION", id }, name = created["name"]!.GetValue<string>(), type = "HTTP", enabled = false,
            configuration = new { url = "http://127.0.0.1:2/", secret = "a-******" },
        });
        Assert.Equal("a-******", updated["configuration"]!["secret"]!.GetValue<string>());
        Assert.False(updated["enabled"]!.GetValue<bool>());
        await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/integration/{id}");
        await PlatformApi.ExpectProblemAsync(await fixture.Admin.SendAsync(HttpMethod.Get, $"/api/integration/{id}"), HttpStatusCode.NotFound);
    }

    [Fact]
    public async Task Integration_Viewer_ReadsIntegrationsWithHeaderValuesMasked_AndIsRefusedEveryChange()
    {
        var id = await CreateWebhookAsync("http://127.0.0.1:1/", new Dictionary<string, string> { ["Authorization"] = "Bearer city-token" });
        using var viewer = await fixture.Admin.CreateUserAsync("VIEWER");

        var seen = await viewer.GetAsync($"/api/integration/{id}");
        Assert.Equal("******", seen["configuration"]!["headers"]!["Authorization"]!.GetValue<string>());
        Assert.Equal("Bearer city-token", (await fixture.Admin.GetAsync($"/api/integration/{id}"))["configuration"]!["headers"]!["Authorization"]!.GetValue<string>());
        var listed = await viewer.GetAsync("/api/integrations?pageSize=100&page=0");
        Assert.Contains(listed["data"]!.AsArray(), i => i!["id"]!["id"]!.GetValue<string>() == id);
        await viewer.GetAsync($"/api/integration/{id}/stats");
        await viewer.GetAsync($"/api/integration/{id}/deadLetters?pageSize=10&page=0");

        await PlatformApi.ExpectProblemAsync(await viewer.SendAsync(HttpMethod.Post, "/api/integration",
            new { id = new { entityType = "INTEGRATION", id }, name = "renamed", type = "HTTP", configuration = new { url = "http://127.0.0.1:1/", secret = "s" } }), HttpStatusCode.Forbidden);
        await PlatformApi.ExpectProblemAsync(await viewer.SendAsync(HttpMethod.Post, $"/api/integration/{id}/deadLetters/replay"), HttpStatusCode.Forbidden);
        await PlatformApi.ExpectProblemAsync(await viewer.SendAsync(HttpMethod.Delete, $"/api/integration/{id}"), HttpStatusCode.Forbidden);
        await fixture.Admin.GetAsync($"/api/integration/{id}");
        await fixture.Admin.SendAsync(HttpMethod.Delete, $"/api/integration/{id}");
    }

    private async Task<string> CreateWebhookAsync(string url, Dictionary<string, string>? headers = null)
    {
        var created = await fixture.Admin.PostAsync("/api/integration", new
        {
            name = "hook-" + Guid.NewGuid().ToString("N")[..8],
            type = "HTTP",
            messageTypes = new[] { "TELEMETRY" },
            configuration = new { url, secret = Secret, headers, requestTimeoutMs = 5000 },
        });
        return created["id"]!["id"]!.GetValue<string>();
    }



    private static List<int> FirstSeenOrder(List<int> numbers) => [.. numbers.Distinct()];

}
