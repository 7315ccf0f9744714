using System.Diagnostics;
using System.Net;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Taihu.Platform.Devices;
using Taihu.Platform.Events;
using Taihu.Platform.Integrations;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Tests;

/// <summary>
/// Integrations (migration 12): the integrations table, the outbox the event consumer fills, the dead letters; and
/// delivery by the owner of an integration on a fake clock: order per device, back-off, the dead-letter rules.
/// </summary>
public abstract partial class StorageTests
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(20);

    [Fact]
    public void Backoff_Doubles_FromOneSecond_ToFiveMinutes()
    {
        Assert.Equal(TimeSpan.FromSeconds(1), IntegrationDelivery.Backoff(1));
        Assert.Equal(TimeSpan.FromSeconds(2), IntegrationDelivery.Backoff(2));
        Assert.Equal(TimeSpan.FromSeconds(4), IntegrationDelivery.Backoff(3));
        Assert.Equal(TimeSpan.FromSeconds(256), IntegrationDelivery.Backoff(9));
        Assert.Equal(TimeSpan.FromMinutes(5), IntegrationDelivery.Backoff(10));
        Assert.Equal(TimeSpan.FromMinutes(5), IntegrationDelivery.Backoff(1000));
    }

    [Fact]
    public async Task Integration_RoundTrips_IsScopedToItsTenant_AndGoesWithIt()
    {
        var store = new SqlIntegrationStore(Database);
        var tenant = await NewTenantAsync();
        var other = await NewTenantAsync();
        var configuration = new IntegrationConfiguration
        {
            Url = "http://127.0.0.1:9/hook", Secret = "s", Headers = new Dictionary<string, string> { ["X-A"] = "1" }, MessageTypes = ["TELEMETRY"],
            DeviceProfileIds = [Guid.NewGuid()],
        };
        var integration = new Integration(Guid.NewGuid(), tenant.Id, "Dispatch", IntegrationType.Http, true, configuration, T0);
        await store.CreateAsync(integration);
        var read = await store.GetAsync(integration.Id, tenant.Id);
        Assert.NotNull(read);
        Assert.Equal("Dispatch", read.Name);
        Assert.Equal(configuration.ToJson(), read.Configuration.ToJson());
        Assert.Equal(IntegrationConfiguration.DefaultRetryLimitMs, read.Configuration.RetryLimitMs);
        Assert.Null(await store.GetAsync(integration.Id, other.Id));
        var clash = await Assert.ThrowsAsync<PlatformException>(() => store.CreateAsync(integration with { Id = Guid.NewGuid() }));
        Assert.Equal(409, clash.Status);

        Assert.False(await store.UpdateAsync(integration with { TenantId = other.Id, Name = "x" }));
        var mqtt = integration with { Type = IntegrationType.Mqtt, Enabled = false, Configuration = new IntegrationConfiguration { Topic = "a/{type}", Qos = 0 } };
        Assert.True(await store.UpdateAsync(mqtt));
        read = await store.GetAsync(integration.Id, tenant.Id);
        Assert.Equal(IntegrationType.Mqtt, read!.Type);
        Assert.False(read.Enabled);
        Assert.Equal("a/{type}", read.Configuration.Topic);

        await store.CreateAsync(integration with { Id = Guid.NewGuid(), Name = "Archive" });
        var page = await store.ListAsync(tenant.Id, new PageRequest(PageSize: 1, TextSearch: "arch"));
        Assert.Equal(1, page.TotalElements);
        Assert.Equal("Archive", page.Data[0].Name);
        Assert.Equal(2, (await store.ListAsync(tenant.Id, new PageRequest())).TotalElements);
        Assert.Equal(0, (await store.ListAsync(other.Id, new PageRequest())).TotalElements);

        Assert.False(await store.DeleteAsync(integration.Id, other.Id));
        Assert.True(await store.DeleteAsync(integration.Id, tenant.Id));
        Assert.True(await Tenants.DeleteTenantAsync(tenant.Id));
        Assert.Empty(await store.ListAllAsync());
    }

    [Fact]
    public async Task Outbox_TakesMatchingEvents_WithTheCursor_DeadLettersBeyondItsLimit_AndReplays()
    {
        var store = new SqlIntegrationStore(Database);
        var (tenant, profile, device) = await NewTenantWithDeviceAsync("pump-1");
        var otherProfile = await NewProfileAsync(tenant.Id);
        var elsewhere = await NewDeviceAsync(tenant.Id, otherProfile.Id, "pump-2");
        var integration = new Integration(Guid.NewGuid(), tenant.Id, "Telemetry of one profile", IntegrationType.Http, true,
            new IntegrationConfiguration { Url = "http://127.0.0.1:9/", Secret = "s", MessageTypes = ["TELEMETRY"], DeviceProfileIds = [profile.Id] }, T0);
        await store.CreateAsync(integration);
        using var registry = new IntegrationRegistry(store);
        var outbox = new IntegrationOutbox(Database, registry, Options.Create(new IntegrationOptions { MaxOutboxEvents = 2 }), Time);

        PlatformEvent[] events =
        [
            TelemetryEvent(device, 1, 1), TelemetryEvent(elsewhere, 2, 2), ConnectEvent(device, 3), TelemetryEvent(device, 4, 3), TelemetryEvent(device, 5, 4),
        ];
        await outbox.ConsumeAsync(events, 5, CancellationToken.None);
        Assert.Equal(5, await Events.EventLog.LoadCursorAsync(Database, IntegrationOutbox.ConsumerName, CancellationToken.None));

        // Of five events, three match (the other profile's and the CONNECT do not); the outbox holds two, the third is "outbox full".
        var heads = await store.ReadHeadsAsync(integration.Id, 10);
        var head = Assert.Single(heads);
        Assert.Equal("pump-1", head.DeviceName);
        var body = JsonNode.Parse(head.Body)!;
        Assert.Equal(events[0].Id.ToString(), body["id"]!.GetValue<string>());
        Assert.Equal("TELEMETRY", body["type"]!.GetValue<string>());
        Assert.Equal(tenant.Id.ToString(), body["tenantId"]!.GetValue<string>());
        Assert.Equal(1, body["data"]![0]!["values"]!["n"]!.GetValue<long>());
        var stats = await store.StatsAsync(integration.Id);
        Assert.Equal(2, stats.OutboxSize);
        Assert.Equal(1, stats.Dead);
        var dead = Assert.Single((await store.ListDeadLettersAsync(integration.Id, new PageRequest())).Data);
        Assert.Equal(IntegrationOutbox.OutboxFull, dead.Reason);
        Assert.Equal(4, JsonNode.Parse(dead.Body)!["data"]![0]!["values"]!["n"]!.GetValue<long>());

        // A retry is recorded on the row; a replayed dead letter goes back to the end of the outbox.
        await store.RetryLaterAsync(head.IntegrationId, head.Seq, 1, T0, T0 + 1000, 503, "The webhook answered 503.");
        Assert.Equal(1, (await store.StatsAsync(integration.Id)).Retrying);
        Assert.Equal("The webhook answered 503.", (await store.StatsAsync(integration.Id)).LastError);
        Assert.Equal(0, await store.ReplayAsync(integration.Id, Guid.NewGuid()));
        Assert.Equal(1, await store.ReplayAsync(integration.Id, dead.Id));
        stats = await store.StatsAsync(integration.Id);
        Assert.Equal(3, stats.OutboxSize);
        Assert.Equal(0, stats.Dead);
        Assert.Equal(T0, stats.OldestCreatedTime);
    }

    [Fact]
    public async Task Delivery_KeepsOrderPerDevice_RetriesWithBackoff_AndDeadLettersByTheRules()
    {
        var store = new SqlIntegrationStore(Database);
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id, "default", isDefault: true);
        var a = await NewDeviceAsync(tenant.Id, profile.Id, "a");
        var b = await NewDeviceAsync(tenant.Id, profile.Id, "b");
        var c = await NewDeviceAsync(tenant.Id, profile.Id, "c");

        // a's first event fails once (503) and its third is refused (400); c's first always fails (500); the rest is taken.
        var seen = new List<(string Device, long N, int Status)>();
        var failedOnce = false;
        await using var receiver = await Receiver.StartAsync((device, n) =>
        {
            var status = (device, n) switch
            {
                ("a", 1) when !failedOnce => 503,
                ("a", 3) => 400,
                ("c", 1) => 500,
                _ => 200,
            };
            failedOnce |= device == "a" && n == 1;
            lock (seen)
            {
                seen.Add((device, n, status));
            }

            return status;
        });
        var integration = new Integration(Guid.NewGuid(), tenant.Id, "Dispatch", IntegrationType.Http, true,
            new IntegrationConfiguration { Url = receiver.Url, Secret = "s", RetryLimitMs = 5_000, RequestTimeoutMs = 300_000 }, T0);
        await store.CreateAsync(integration);
        using var registry = new IntegrationRegistry(store);
        var options = Options.Create(new IntegrationOptions());
        var outbox = new IntegrationOutbox(Database, registry, options, Time);
        await outbox.ConsumeAsync([TelemetryEvent(a, 1, 1), TelemetryEvent(b, 2, 1), TelemetryEvent(c, 3, 1), TelemetryEvent(a, 4, 2), TelemetryEvent(b, 5, 2), TelemetryEvent(a, 6, 3),
            TelemetryEvent(c, 7, 2), TelemetryEvent(a, 8, 4)], 8, CancellationToken.None);

        using var delivery = new IntegrationDelivery(store, registry, options, Time, NullLogger<IntegrationDelivery>.Instance);
        await delivery.StartAsync(CancellationToken.None);
        try
        {
            // Without the clock moving: b's events go, a's first failed and waits; a's second was not sent meanwhile.
            await UntilAsync(async () =>
            {
                var heads = await store.ReadHeadsAsync(integration.Id, 10);
                return heads.Any(r => r.DeviceName == "a" && r.Attempts == 1) && heads.Any(r => r.DeviceName == "c" && r.Attempts == 1) && !heads.Any(r => r.DeviceName == "b");
            });
            var aHead = (await store.ReadHeadsAsync(integration.Id, 10)).Single(r => r.DeviceName == "a");
            Assert.Equal(T0, aHead.FirstAttempt);
            Assert.Equal(T0 + 1000, aHead.NextAttempt);
            Assert.Equal(503, aHead.LastStatus);
            var cHead = (await store.ReadHeadsAsync(integration.Id, 10)).Single(r => r.DeviceName == "c");
            Assert.Equal(T0 + 1000, cHead.NextAttempt);
            lock (seen)
            {
                Assert.Equal([(1L, 503)], seen.Where(s => s.Device == "a").Select(s => (s.N, s.Status)));
                Assert.Equal([1L, 2L], seen.Where(s => s.Device == "b").Select(s => s.N));
            }

            // The clock moves: a's first goes on the retry, then its second; its third is refused and dead at once, and
            // its fourth follows. c retries at 1, 2, 4 s and is dead-lettered once 5 s have passed; its second then goes.
            // The clock moves only while delivery waits with nothing in flight, to the time it waits for (a little past it
            // when the owner is slow to wake). Moved on every read instead, it could pass a's retry limit before a's
            // retry was sent.
            var state = registry.Find(integration.Id)!;
            var clock = Stopwatch.StartNew();
            while ((await store.StatsAsync(integration.Id)).OutboxSize != 0)
            {
                Assert.True(clock.Elapsed < Guard, "The outbox did not empty.");
                if (state.IdleUntil is var until && until > 0)
                {
                    Time.Advance(TimeSpan.FromMilliseconds(Math.Max(1, until - Time.GetUtcNow().ToUnixTimeMilliseconds())));
                }
            }

            lock (seen)
            {
                Assert.Equal([(1L, 503), (1L, 200), (2L, 200), (3L, 400), (4L, 200)], seen.Where(s => s.Device == "a").Select(s => (s.N, s.Status)));
                // c's first is sent at 0 s and again 1, 2, 4 s after the previous attempt (at 1, 3 and 7 s); at 7 s more
                // than 5 s have passed, so it is dead; its second goes after it.
                var cPosts = seen.Where(s => s.Device == "c").Select(s => s.N).ToList();
                Assert.Equal(4, cPosts.Count(n => n == 1));
                Assert.Equal(2L, cPosts[^1]);
                Assert.Single(cPosts, n => n == 2);
            }

            var dead = (await store.ListDeadLettersAsync(integration.Id, new PageRequest())).Data;
            Assert.Equal(2, dead.Count);
            var refused = dead.Single(d => d.DeviceName == "a");
            Assert.Equal(400, refused.LastStatus);
            Assert.Equal(1, refused.Attempts);
            Assert.Contains("400", refused.Reason, StringComparison.Ordinal);
            var expired = dead.Single(d => d.DeviceName == "c");
            Assert.Equal(500, expired.LastStatus);
            Assert.Equal(seen.Count(s => s.Device == "c" && s.N == 1), expired.Attempts);
            Assert.StartsWith("Retried for", expired.Reason, StringComparison.Ordinal);
            Assert.Equal(6, state.Sent);
            Assert.Equal(1 + expired.Attempts, state.Failed);
            Assert.Equal(2, state.Dead);
        }
        finally
        {
            await delivery.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task AlarmChanges_AreInTheEventLog_AsTheApiShowsThem_WithTheirKind()
    {
        var (tenant, _, device) = await NewTenantWithDeviceAsync();
        var signal = new EventSignal();
        var notified = 0;
        signal.Committed += () => Interlocked.Increment(ref notified);
        var alarms = new Alarms.AlarmService(new Alarms.SqlAlarmStore(Database, signal), Devices, Tenants, Audit, new Alarms.AlarmFeed(), Time,
            NullLogger<Alarms.AlarmService>.Instance);
        var after = await Events.EventLog.LastPositionAsync(Database, CancellationToken.None);

        var raised = await alarms.RaiseAsync(tenant.Id, device.Id, "High PM2.5", Alarms.AlarmSeverity.Major, "{\"value\":90}", T0);
        await alarms.RaiseAsync(tenant.Id, device.Id, "High PM2.5", Alarms.AlarmSeverity.Critical, null, T0 + 1);
        await alarms.ClearAsync(tenant.Id, device.Id, "High PM2.5", T0 + 2);
        await alarms.AckAsync(TenantAdmin(tenant.Id), raised.Alarm!.Id, CancellationToken.None);

        var rows = await Events.EventLog.ReadAsync(Database, after, 100, CancellationToken.None);
        var recorded = new List<DeviceEventRecord>();
        foreach (var row in rows)
        {
            Assert.Equal(EventLogKind.Device, row.Kind);
            var decoded = new DecodedRow();
            EventCodec.Decode(row.Kind, row.Body, decoded);
            recorded.AddRange(decoded.Events);
        }

        Assert.Equal([PlatformEventType.AlarmCreated, PlatformEventType.AlarmUpdated, PlatformEventType.AlarmCleared, PlatformEventType.AlarmUpdated],
            recorded.Select(r => r.Type));
        Assert.All(recorded, r => Assert.Equal(device.Seq, r.DeviceSeq));
        Assert.Equal(4, notified);
        var created = JsonNode.Parse(recorded[0].DataJson!)!;
        Assert.Equal("High PM2.5", created["type"]!.GetValue<string>());
        Assert.Equal("MAJOR", created["severity"]!.GetValue<string>());
        Assert.Equal("ACTIVE_UNACK", created["status"]!.GetValue<string>());
        Assert.Equal(90, created["details"]!["value"]!.GetValue<int>());
        Assert.Equal(raised.Alarm.Id.ToString(), created["id"]!["id"]!.GetValue<string>());
        Assert.Equal(device.Id.ToString(), created["originator"]!["id"]!.GetValue<string>());
        Assert.Equal("CRITICAL", JsonNode.Parse(recorded[1].DataJson!)!["severity"]!.GetValue<string>());
        Assert.Equal("CLEARED_UNACK", JsonNode.Parse(recorded[2].DataJson!)!["status"]!.GetValue<string>());
        Assert.Equal("CLEARED_ACK", JsonNode.Parse(recorded[3].DataJson!)!["status"]!.GetValue<string>());
    }

    /// <summary>Checks <paramref name="condition"/> (a storage read) until it holds.</summary>
    private async Task UntilAsync(Func<Task<bool>> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!await condition())
        {
            Assert.True(clock.Elapsed < Guard, "The condition did not come true.");
        }
    }

    private static PlatformEvent TelemetryEvent(Device device, long position, long n) => new()
    {
        Position = position, Index = 0, Type = PlatformEventType.Telemetry, Device = device, Ts = T0 + n, Committed = T0,
        Points = [new TelemetryPoint("n", T0 + n, KvValue.Of(n))],
    };

    private static PlatformEvent ConnectEvent(Device device, long position) => new()
    {
        Position = position, Index = 0, Type = PlatformEventType.Connect, Device = device, Ts = T0, Committed = T0,
    };

    /// <summary>A webhook receiver on 127.0.0.1 port 0 answering what <c>answer(deviceName, n)</c> says.</summary>
    private sealed class Receiver : IAsyncDisposable
    {
        private readonly WebApplication _app;

        private Receiver(WebApplication app, string url)
        {
            _app = app;
            Url = url;
        }

        public string Url { get; }

        public static async Task<Receiver> StartAsync(Func<string, long, int> answer)
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0));
            var app = builder.Build();
            app.MapPost("/hook", async (HttpContext context) =>
            {
                var body = await JsonNode.ParseAsync(context.Request.Body);
                return Results.StatusCode(answer(body!["deviceName"]!.GetValue<string>(), body["data"]![0]!["values"]!["n"]!.GetValue<long>()));
            });
            await app.StartAsync();
            return new Receiver(app, app.Urls.First() + "/hook");
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }
    }
}
