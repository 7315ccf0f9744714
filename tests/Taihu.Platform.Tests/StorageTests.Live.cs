using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Tests;

/// <summary>
/// The live feed on each database: committed telemetry and attributes reach the subscribers of their device, and
/// connectivity is written as server attributes and the time series <c>active</c>.
/// </summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task LiveFeed_HearsCommittedTelemetry_OfItsDeviceOnly_OncePerRunOfTheBatch()
    {
        var (tenant, profile, a) = await NewTenantWithDeviceAsync();
        var b = await NewDeviceAsync(tenant.Id, profile.Id);
        var feed = new LiveFeed(NullLogger<LiveFeed>.Instance);
        await using var ingest = new TelemetryIngest(Telemetry, Options.Create(new IngestOptions()), NullLogger<TelemetryIngest>.Instance, null, feed);
        var hearsA = new RecordingSubscriber(a.Seq);
        feed.Add(hearsA);

        await SubmitAsync(ingest, b, new TelemetryPoint("t", T0, KvValue.Of(1L)));
        await SubmitAsync(ingest, a, new TelemetryPoint("t", T0, KvValue.Of(2L)), new TelemetryPoint("h", T0, KvValue.Of(0.5)));

        // The publisher's acknowledgement comes after the feed was told: nothing to wait for.
        var heard = Assert.Single(hearsA.Telemetry);
        Assert.Equal([new TelemetryPoint("t", T0, KvValue.Of(2L)), new TelemetryPoint("h", T0, KvValue.Of(0.5))], heard);
        // What was pushed is what a reader of the store sees.
        Assert.Equal(2, (await Telemetry.GetLatestAsync(a.Seq, null)).Count);

        feed.Remove(hearsA);
        Assert.Equal(0, feed.Count);
        await SubmitAsync(ingest, a, new TelemetryPoint("t", T0 + 1, KvValue.Of(3L)));
        Assert.Single(hearsA.Telemetry);
    }

    [Fact]
    public async Task LiveFeed_HearsCommittedAttributes_WithTheirScope()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var feed = new LiveFeed(NullLogger<LiveFeed>.Instance);
        var attributes = new SqlAttributeStore(Database, feed);
        var subscriber = new RecordingSubscriber(device.Seq);
        feed.Add(subscriber);

        await attributes.SaveAsync(device.Seq, AttributeScope.Shared, [new AttributeEntry("interval", T0, KvValue.Of(30L))]);

        var (scope, entries) = Assert.Single(subscriber.Attributes);
        Assert.Equal(AttributeScope.Shared, scope);
        Assert.Equal([new AttributeEntry("interval", T0, KvValue.Of(30L))], entries);
        Assert.Equal(entries, await attributes.GetAsync(device.Seq, AttributeScope.Shared, null));
    }

    [Fact]
    public async Task Connectivity_IsWrittenAsServerAttributes_AndActiveAsATimeSeries()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var feed = new LiveFeed(NullLogger<LiveFeed>.Instance);
        var attributes = new SqlAttributeStore(Database, feed);
        await using var ingest = new TelemetryIngest(Telemetry, Options.Create(new IngestOptions()), NullLogger<TelemetryIngest>.Instance, null, feed);
        // No periodic flush in this test: each flush is asked for, so each is at a known time.
        using var tracker = new ConnectivityTracker(attributes, Devices, ingest, Time, NullLogger<ConnectivityTracker>.Instance) { FlushInterval = TimeSpan.FromDays(1) };
        var subscriber = new RecordingSubscriber(device.Seq);
        feed.Add(subscriber);
        await tracker.StartAsync(CancellationToken.None);
        try
        {
            tracker.Connected(device);
            await tracker.FlushAsync();
            Assert.Equal(KvValue.Of(true), await ServerAttributeAsync(attributes, device, "active"));
            Assert.Equal(KvValue.Of(T0), await ServerAttributeAsync(attributes, device, "lastConnectTime"));

            Time.Advance(TimeSpan.FromSeconds(5));
            tracker.Disconnected(device);
            await tracker.FlushAsync();
            // As in ThingsBoard, a disconnected device stays active until its inactivity timeout.
            Assert.Equal(KvValue.Of(true), await ServerAttributeAsync(attributes, device, "active"));
            Assert.Equal(KvValue.Of(T0 + 5_000), await ServerAttributeAsync(attributes, device, "lastDisconnectTime"));

            Time.Advance(TimeSpan.FromMilliseconds(DeviceProfile.DefaultInactivityTimeoutMs + 1_000));
            await tracker.FlushAsync();
            Assert.Equal(KvValue.Of(false), await ServerAttributeAsync(attributes, device, "active"));
            var inactiveAt = T0 + 5_000 + DeviceProfile.DefaultInactivityTimeoutMs + 1_000;

            // Activity (telemetry over HTTP, no connection) makes it active again.
            Time.Advance(TimeSpan.FromSeconds(1));
            tracker.Activity(device);
            await tracker.FlushAsync();
            Assert.Equal(KvValue.Of(true), await ServerAttributeAsync(attributes, device, "active"));

            Assert.Equal(
                [
                    new TelemetryPoint("active", T0, KvValue.Of(true)),
                    new TelemetryPoint("active", inactiveAt, KvValue.Of(false)),
                    new TelemetryPoint("active", inactiveAt + 1_000, KvValue.Of(true)),
                ],
                await Telemetry.GetHistoryAsync(device.Seq, "active", 0, long.MaxValue, 10, SortOrder.Ascending));

            // Every change was pushed: attributes for each flush, and each point of the series.
            Assert.Contains(subscriber.Attributes, change => change.Entries.Any(e => e.Key == "active" && e.Value == KvValue.Of(false)));
            Assert.Equal(3, subscriber.Telemetry.Sum(points => points.Count(p => p.Key == "active")));
        }
        finally
        {
            await tracker.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task ProfileTimeouts_AreReadOncePerProfile_AndReadAgainAfterTheProfileChanged()
    {
        var (tenant, profile, _) = await NewTenantWithDeviceAsync();
        var other = await NewProfileAsync(tenant.Id);
        var signal = new Events.EventSignal();
        var timeouts = new ProfileTimeouts(Devices, signal);

        var first = timeouts.GetAsync(tenant.Id, profile.Id);
        Assert.Equal(DeviceProfile.DefaultInactivityTimeoutMs, await first);
        // Every later device of the profile shares the one read.
        Assert.Same(first, timeouts.GetAsync(tenant.Id, profile.Id));
        var ofOther = timeouts.GetAsync(tenant.Id, other.Id);
        await ofOther;

        Assert.True(await Devices.UpdateProfileAsync(profile with { InactivityTimeoutMs = 30_000 }));
        signal.NotifyProfileChanged(profile.Id);

        Assert.Equal(30_000, await timeouts.GetAsync(tenant.Id, profile.Id));
        // Only the changed profile was forgotten; one that is not found gets ThingsBoard's default.
        Assert.Same(ofOther, timeouts.GetAsync(tenant.Id, other.Id));
        Assert.Equal(DeviceProfile.DefaultInactivityTimeoutMs, await timeouts.GetAsync(tenant.Id, Guid.NewGuid()));
    }

    [Fact]
    public async Task Devices_ShownActive_AreListed_WithTheirConnectivity()
    {
        var (tenant, profile, active) = await NewTenantWithDeviceAsync();
        var inactive = await NewDeviceAsync(tenant.Id, profile.Id);
        var bare = await NewDeviceAsync(tenant.Id, profile.Id);
        await Attributes.SaveAsync(active.Seq, AttributeScope.Server,
        [
            new AttributeEntry("active", T0, KvValue.Of(true)),
            new AttributeEntry("lastConnectTime", T0, KvValue.Of(T0 - 3)),
            new AttributeEntry("lastDisconnectTime", T0, KvValue.Of(T0 - 2)),
            new AttributeEntry("lastActivityTime", T0, KvValue.Of(T0 - 1)),
        ]);
        await Attributes.SaveAsync(inactive.Seq, AttributeScope.Server, [new AttributeEntry("active", T0, KvValue.Of(false))]);
        await Attributes.SaveAsync(bare.Seq, AttributeScope.Server, [new AttributeEntry("active", T0, KvValue.Of(true))]);
        // A client attribute of the same name is the device's own business.
        await Attributes.SaveAsync(inactive.Seq, AttributeScope.Client, [new AttributeEntry("active", T0, KvValue.Of(true))]);

        Assert.Equal(
            [new StoredConnectivity(active, T0 - 3, T0 - 2, T0 - 1), new StoredConnectivity(bare, 0, 0, 0)],
            await Devices.ListActiveDevicesAsync());

        // A partition of them: those whose row number leaves the partition's number, divided by the partitions.
        for (var partition = 0; partition < 3; partition++)
        {
            Assert.Equal(
                new[] { new StoredConnectivity(active, T0 - 3, T0 - 2, T0 - 1), new StoredConnectivity(bare, 0, 0, 0) }.Where(d => d.Device.Seq % 3 == partition),
                await Devices.ListActiveDevicesAsync(partition, 3));
        }
    }

    [Fact]
    public async Task Connectivity_AfterARestart_StartsFromStorage_AndTimesOutDevicesNeverHeardFromAgain()
    {
        var (tenant, profile, silent) = await NewTenantWithDeviceAsync();
        var back = await NewDeviceAsync(tenant.Id, profile.Id);
        var attributes = new SqlAttributeStore(Database);
        await using var ingest = new TelemetryIngest(Telemetry, Options.Create(new IngestOptions()), NullLogger<TelemetryIngest>.Instance);

        // The first run: both connect.
        using (var first = new ConnectivityTracker(attributes, Devices, ingest, Time, NullLogger<ConnectivityTracker>.Instance) { FlushInterval = TimeSpan.FromDays(1) })
        {
            await first.StartAsync(CancellationToken.None);
            first.Connected(silent);
            first.Connected(back);
            await first.FlushAsync();
            await first.StopAsync(CancellationToken.None);
        }

        // The second run: one reconnects at once (no new point: it was active all along); the other is never heard
        // from again and becomes inactive at its timeout.
        using var second = new ConnectivityTracker(attributes, Devices, ingest, Time, NullLogger<ConnectivityTracker>.Instance) { FlushInterval = TimeSpan.FromDays(1) };
        await second.StartAsync(CancellationToken.None);
        try
        {
            Time.Advance(TimeSpan.FromSeconds(1));
            second.Connected(back);
            await second.FlushAsync();
            Assert.Equal(KvValue.Of(true), await ServerAttributeAsync(attributes, silent, "active"));

            Time.Advance(TimeSpan.FromMilliseconds(DeviceProfile.DefaultInactivityTimeoutMs));
            await second.FlushAsync();
            Assert.Equal(KvValue.Of(false), await ServerAttributeAsync(attributes, silent, "active"));
            Assert.Equal(KvValue.Of(true), await ServerAttributeAsync(attributes, back, "active"));
            Assert.Equal(KvValue.Of(T0 + 1_000), await ServerAttributeAsync(attributes, back, "lastConnectTime"));

            var silentAt = T0 + 1_000 + DeviceProfile.DefaultInactivityTimeoutMs;
            Assert.Equal(
                [new TelemetryPoint("active", T0, KvValue.Of(true)), new TelemetryPoint("active", silentAt, KvValue.Of(false))],
                await Telemetry.GetHistoryAsync(silent.Seq, "active", 0, long.MaxValue, 10, SortOrder.Ascending));
            Assert.Equal(
                [new TelemetryPoint("active", T0, KvValue.Of(true))],
                await Telemetry.GetHistoryAsync(back.Seq, "active", 0, long.MaxValue, 10, SortOrder.Ascending));
        }
        finally
        {
            await second.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Connectivity_OneOwnerOfTwoNodesReports_ADeviceThatMovedStaysActive_AndGoesInactiveOnceGoneFromBoth()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var attributes = new SqlAttributeStore(Database);
        await using var ingest = new TelemetryIngest(Telemetry, Options.Create(new IngestOptions()), NullLogger<TelemetryIngest>.Instance);
        var owner = new ConnectivityOwners(attributes, Devices, ingest, NullLoggerFactory.Instance).Create();
        ConnectivityTracker Node(int id) => ClusterNode(attributes, ingest, owner, id);
        using var nodeA = Node(1);
        using var nodeB = Node(2);
        await nodeA.StartAsync(CancellationToken.None);
        await nodeB.StartAsync(CancellationToken.None);
        async Task FlushAllAsync()
        {
            await nodeA.FlushAsync();
            await nodeB.FlushAsync();
            await owner.FlushAsync(Time.GetUtcNow().ToUnixTimeMilliseconds(), CancellationToken.None);
        }

        try
        {
            nodeA.Connected(device);
            await FlushAllAsync();
            Assert.Equal(KvValue.Of(true), await ServerAttributeAsync(attributes, device, "active"));

            // It moves to node B a second later; node A reports its disconnect last: the newer connect stays.
            Time.Advance(TimeSpan.FromSeconds(1));
            nodeB.Connected(device);
            await nodeB.FlushAsync();
            nodeA.Disconnected(device);
            await FlushAllAsync();
            Assert.Equal(KvValue.Of(T0 + 1_000), await ServerAttributeAsync(attributes, device, "lastConnectTime"));
            Assert.Equal(KvValue.Of(T0 + 1_000), await ServerAttributeAsync(attributes, device, "lastDisconnectTime"));

            // Silent past the timeout, but connected to node B: active.
            Time.Advance(TimeSpan.FromMilliseconds(DeviceProfile.DefaultInactivityTimeoutMs + 1_000));
            await FlushAllAsync();
            Assert.Equal(KvValue.Of(true), await ServerAttributeAsync(attributes, device, "active"));

            // Gone from node B too and silent past the timeout: inactive, once.
            nodeB.Disconnected(device);
            var goneAt = Time.GetUtcNow().ToUnixTimeMilliseconds();
            await FlushAllAsync();
            Time.Advance(TimeSpan.FromMilliseconds(DeviceProfile.DefaultInactivityTimeoutMs + 1_000));
            await FlushAllAsync();
            await FlushAllAsync();
            Assert.Equal(KvValue.Of(false), await ServerAttributeAsync(attributes, device, "active"));
            Assert.Equal(KvValue.Of(goneAt), await ServerAttributeAsync(attributes, device, "lastDisconnectTime"));
            var falses = (await Telemetry.GetHistoryAsync(device.Seq, "active", 0, long.MaxValue, 10, SortOrder.Ascending)).Count(p => p.Value == KvValue.Of(false));
            Assert.Equal(1, falses);
        }
        finally
        {
            await nodeA.StopAsync(CancellationToken.None);
            await nodeB.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Connectivity_ReportsTheOwnerDidNotTake_AreReportedAgain_AndADisconnectedDeviceIsForgottenOnlyOnceTaken()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        var attributes = new SqlAttributeStore(Database);
        await using var ingest = new TelemetryIngest(Telemetry, Options.Create(new IngestOptions()), NullLogger<TelemetryIngest>.Instance);
        var owner = new ConnectivityOwners(attributes, Devices, ingest, NullLoggerFactory.Instance).Create();
        var elsewhere = new ReportsTo(owner, 1) { Refuse = true };
        using var node = new ConnectivityTracker(attributes, Devices, ingest, Time, NullLogger<ConnectivityTracker>.Instance)
        {
            FlushInterval = TimeSpan.FromDays(1),
            Elsewhere = elsewhere,
        };
        await node.StartAsync(CancellationToken.None);
        try
        {
            // Connected and gone again within one flush; the owner (its node unreachable) does not take the report.
            node.Connected(device);
            Time.Advance(TimeSpan.FromMilliseconds(300));
            node.Disconnected(device);
            await node.FlushAsync();
            Assert.Equal(1, elsewhere.Offered);
            Assert.Equal(0, owner.Count);

            // The next flush offers it again, whole; taken now.
            elsewhere.Refuse = false;
            await node.FlushAsync();
            Assert.Equal(2, elsewhere.Offered);
            await owner.FlushAsync(Time.GetUtcNow().ToUnixTimeMilliseconds(), CancellationToken.None);
            Assert.Equal(KvValue.Of(T0), await ServerAttributeAsync(attributes, device, "lastConnectTime"));
            Assert.Equal(KvValue.Of(T0 + 300), await ServerAttributeAsync(attributes, device, "lastDisconnectTime"));

            // Taken and not connected here: forgotten by the node, offered no more.
            await node.FlushAsync();
            Assert.Equal(2, elsewhere.Offered);
            Assert.Empty(await node.ConnectedAsync(_ => true));
        }
        finally
        {
            await node.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Connectivity_AnOwnerRebuiltAfterItsProcessDied_DisconnectsTheDevicesNoLiveNodeHas_AndKeepsTheOthersConnected()
    {
        var (_, _, lost) = await NewTenantWithDeviceAsync();
        var (_, _, here) = await NewTenantWithDeviceAsync();
        var attributes = new SqlAttributeStore(Database);
        await using var ingest = new TelemetryIngest(Telemetry, Options.Create(new IngestOptions()), NullLogger<TelemetryIngest>.Instance);
        var owners = new ConnectivityOwners(attributes, Devices, ingest, NullLoggerFactory.Instance);
        var first = owners.Create();
        ConnectivityTracker Node(int id) => ClusterNode(attributes, ingest, first, id);
        using var live = Node(1);
        using var dead = Node(2);
        await live.StartAsync(CancellationToken.None);
        await dead.StartAsync(CancellationToken.None);
        try
        {
            live.Connected(here);
            dead.Connected(lost);
            await live.FlushAsync();
            await dead.FlushAsync();
            await first.FlushAsync(Time.GetUtcNow().ToUnixTimeMilliseconds(), CancellationToken.None);

            // The owner's process and node 2 die together. A second later the owner is rebuilt elsewhere: from
            // storage, and from what the live node says it has connected.
            Time.Advance(TimeSpan.FromSeconds(1));
            var rebuiltAt = Time.GetUtcNow().ToUnixTimeMilliseconds();
            var rebuilt = owners.Create();
            rebuilt.Restore((await Devices.ListActiveDevicesAsync()).Where(d => d.Device.Seq == lost.Seq || d.Device.Seq == here.Seq).ToList());
            var connected = await live.ConnectedAsync(_ => true);
            Assert.Equal([here.Seq], connected.Select(r => r.DeviceSeq));
            foreach (var report in connected)
            {
                rebuilt.Report(1, report);
            }

            Assert.Equal(1, rebuilt.DisconnectUnconnected(rebuiltAt));
            await rebuilt.FlushAsync(rebuiltAt, CancellationToken.None);
            Assert.Equal(KvValue.Of(rebuiltAt), await ServerAttributeAsync(attributes, lost, "lastDisconnectTime"));
            Assert.Equal(KvValue.Of(true), await ServerAttributeAsync(attributes, lost, "active"));
            Assert.Null(await ServerAttributeAsync(attributes, here, "lastDisconnectTime"));

            // Silent past its profile's timeout (from its connect): inactive; the one connected to the live node stays active.
            Time.Advance(TimeSpan.FromMilliseconds(DeviceProfile.DefaultInactivityTimeoutMs));
            await rebuilt.FlushAsync(Time.GetUtcNow().ToUnixTimeMilliseconds(), CancellationToken.None);
            Assert.Equal(KvValue.Of(false), await ServerAttributeAsync(attributes, lost, "active"));
            Assert.Equal(KvValue.Of(true), await ServerAttributeAsync(attributes, here, "active"));
        }
        finally
        {
            await live.StopAsync(CancellationToken.None);
            await dead.StopAsync(CancellationToken.None);
        }
    }

    [Fact]
    public async Task Connectivity_ANodeGone_DisconnectsItsDevicesAtTheDeath_ButNotThoseAlsoConnectedToALiveNode()
    {
        var (tenant, profile, lost) = await NewTenantWithDeviceAsync();
        var both = await NewDeviceAsync(tenant.Id, profile.Id);
        var attributes = new SqlAttributeStore(Database);
        await using var ingest = new TelemetryIngest(Telemetry, Options.Create(new IngestOptions()), NullLogger<TelemetryIngest>.Instance);
        var owner = new ConnectivityOwners(attributes, Devices, ingest, NullLoggerFactory.Instance).Create();
        ConnectivityReport Report(Device device, int connections) => new(device.Seq, device.TenantId, device.ProfileId, connections, T0, 0, T0);
        owner.Report(2, Report(lost, 1));
        owner.Report(2, Report(both, 1));
        owner.Report(1, Report(both, 2));
        await owner.FlushAsync(T0, CancellationToken.None);

        Assert.Equal(2, owner.NodeGone(2, T0 + 500));
        // Said again, or a report of the dead node that comes late (count 0), changes nothing.
        Assert.Equal(0, owner.NodeGone(2, T0 + 600));
        await owner.FlushAsync(T0 + 500, CancellationToken.None);
        Assert.Equal(KvValue.Of(T0 + 500), await ServerAttributeAsync(attributes, lost, "lastDisconnectTime"));
        Assert.Null(await ServerAttributeAsync(attributes, both, "lastDisconnectTime"));

        var past = T0 + DeviceProfile.DefaultInactivityTimeoutMs + 1;
        await owner.FlushAsync(past, CancellationToken.None);
        Assert.Equal(KvValue.Of(false), await ServerAttributeAsync(attributes, lost, "active"));
        Assert.Equal(KvValue.Of(true), await ServerAttributeAsync(attributes, both, "active"));

        // Node 1 closes one of its two connections: still connected.
        owner.Report(1, Report(both, 1));
        await owner.FlushAsync(past + 1, CancellationToken.None);
        Assert.Equal(KvValue.Of(true), await ServerAttributeAsync(attributes, both, "active"));
    }

    private static async Task<KvValue?> ServerAttributeAsync(IAttributeStore attributes, Device device, string key)
    {
        var entries = await attributes.GetAsync(device.Seq, AttributeScope.Server, [key]);
        return entries.Count == 0 ? null : entries[0].Value;
    }

    private static async Task SubmitAsync(TelemetryIngest ingest, Device device, params TelemetryPoint[] points)
    {
        var request = ingest.Rent();
        request.DeviceSeq = device.Seq;
        request.Points.AddRange(points);
        await ingest.SubmitAsync(request);
    }

    /// <summary>
    /// A node's tracker as a cluster node's reports to the owner of its devices' partition: here, one owner in the
    /// test's own process, under the node's number (on a cluster, the partition's grain on whichever node hosts it).
    /// </summary>
    /// <summary>A cluster node's tracker, flushed only when a test says, whose reports go to <paramref name="owner"/> as node <paramref name="id"/>'s.</summary>
    private ConnectivityTracker ClusterNode(SqlAttributeStore attributes, TelemetryIngest ingest, ConnectivityOwner owner, int id) =>
        new(attributes, Devices, ingest, Time, NullLogger<ConnectivityTracker>.Instance)
        {
            FlushInterval = TimeSpan.FromDays(1),
            Elsewhere = new ReportsTo(owner, id),
        };

    private sealed class ReportsTo(ConnectivityOwner owner, int node) : IConnectivityElsewhere
    {
        /// <summary>The owner is out of reach: every report comes back not taken.</summary>
        public bool Refuse { get; set; }

        /// <summary>Reports offered (taken or not).</summary>
        public int Offered { get; private set; }

        public Task ReportAsync(IReadOnlyList<ConnectivityReport> reports, ICollection<long> notTaken, CancellationToken cancellationToken)
        {
            foreach (var report in reports)
            {
                Offered++;
                if (Refuse)
                {
                    notTaken.Add(report.DeviceSeq);
                }
                else
                {
                    owner.Report(node, report);
                }
            }

            return Task.CompletedTask;
        }
    }

    /// <summary>A subscriber that keeps what it hears (a copy: the feed's lists are reused).</summary>
    private sealed class RecordingSubscriber(long deviceSeq) : ILiveSubscriber
    {
        public long DeviceSeq => deviceSeq;

        public List<List<TelemetryPoint>> Telemetry { get; } = [];

        public List<(AttributeScope Scope, List<AttributeEntry> Entries)> Attributes { get; } = [];

        public void OnTelemetry(List<DevicePoint> points, int start, int count)
        {
            var copy = new List<TelemetryPoint>(count);
            for (var i = start; i < start + count; i++)
            {
                Assert.Equal(deviceSeq, points[i].DeviceSeq);
                copy.Add(points[i].Point);
            }

            lock (Telemetry)
            {
                Telemetry.Add(copy);
            }
        }

        public void OnAttributes(AttributeScope scope, IReadOnlyList<AttributeEntry> entries)
        {
            lock (Attributes)
            {
                Attributes.Add((scope, [.. entries]));
            }
        }
    }
}
