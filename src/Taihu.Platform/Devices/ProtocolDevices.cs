using System.Diagnostics.Metrics;
using Taihu.Platform.Rpc;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Devices;

/// <summary>
/// The one way into the platform for the listeners of other protocols (HJ 212, JT/T 808, CoAP): they turn frames
/// into these calls and nothing else, so that a station or a terminal is a device like an MQTT one: the same
/// ingest (acknowledged after commit when <c>Ingest:AckAfterCommit</c> is on), connectivity, RPC and audit.
/// </summary>
/// <remarks>
/// A listener finds its device by credentials (<see cref="FindAsync"/>), opens a <see cref="ProtocolDeviceSession"/>
/// for the life of its connection, submits points through it, and disposes of it when the connection ends. The
/// session holds the device's identity and the connection's command channel, never the other way round: device
/// state does not reference connections.
/// </remarks>
public sealed class ProtocolDevices
{
    private readonly IDeviceStore _store;
    private readonly DeviceDataService _data;
    private readonly ConnectivityTracker _connectivity;
    private readonly RpcDeviceLink _link;
    private readonly RpcService _rpc;
    private readonly TelemetryIngest _ingest;
    private readonly IAttributeStore _attributes;
    private readonly Counter<long> _rejected;
    private readonly Counter<long> _frames;

    public ProtocolDevices(IDeviceStore store, DeviceDataService data, ConnectivityTracker connectivity, RpcDeviceLink link, RpcService rpc, TelemetryIngest ingest,
        IAttributeStore attributes, IMeterFactory? meters = null)
    {
        _attributes = attributes;
        _store = store;
        _data = data;
        _connectivity = connectivity;
        _link = link;
        _rpc = rpc;
        _ingest = ingest;
        var meter = meters?.Create(new MeterOptions(PlatformMetrics.MeterName)) ?? new Meter(PlatformMetrics.MeterName);
        _frames = meter.CreateCounter<long>("taihu.protocol.frames", "{frame}", "Frames received by the listeners of other protocols (HJ 212, JT/T 808, CoAP), by protocol.");
        _rejected = meter.CreateCounter<long>("taihu.protocol.rejected", "{frame}",
            "Frames or connections refused by the listeners of other protocols, by protocol and reason (bad_crc, bad_length, unknown_device, wrong_password, ...).");
    }

    /// <summary>The device of a lookup key (<see cref="DeviceService.Hj212Lookup"/>, <see cref="DeviceService.Jt808Lookup"/>, <see cref="DeviceService.TokenLookup"/>).</summary>
    public Task<StoredCredentials?> FindAsync(string lookup, CancellationToken cancellationToken = default) => _store.FindByLookupAsync(lookup, cancellationToken);

    /// <summary>The profile whose provision key is <paramref name="key"/>, if provisioning is open on it.</summary>
    public async Task<DeviceProfile?> FindProvisioningProfileAsync(string key, CancellationToken cancellationToken = default) =>
        await _store.FindProfileByProvisionKeyAsync(key, cancellationToken) is { ProvisionType: ProvisionType.AllowCreateNewDevices } profile ? profile : null;

    /// <summary>
    /// Server-scope attributes of <paramref name="device"/> named in <paramref name="keys"/>: the per-device settings an
    /// operator gives a station or terminal in the console (HJ 212's <c>hj212Crc</c>, say), read when its connection
    /// identifies it.
    /// </summary>
    public Task<IReadOnlyList<AttributeEntry>> GetServerAttributesAsync(Device device, IReadOnlyCollection<string> keys, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(device);
        return _attributes.GetAsync(device.Seq, AttributeScope.Server, keys, cancellationToken);
    }

    /// <summary>A frame of <paramref name="protocol"/> arrived (counted in <c>/metrics</c>).</summary>
    public void CountFrame(string protocol) => _frames.Add(1, new KeyValuePair<string, object?>("protocol", protocol));

    /// <summary>A frame or connection of <paramref name="protocol"/> was refused for <paramref name="reason"/> (a short snake_case word).</summary>
    public void CountRejected(string protocol, string reason) =>
        _rejected.Add(1, new KeyValuePair<string, object?>("protocol", protocol), new KeyValuePair<string, object?>("reason", reason));

    /// <summary>
    /// The connection now speaks for <paramref name="device"/>: it is online, and RPC commands go to
    /// <paramref name="channel"/> (null for a protocol that cannot carry commands). Dispose of the session when the
    /// connection ends.
    /// </summary>
    public ProtocolDeviceSession Open(Device device, IDeviceCommandChannel? channel)
    {
        var session = new ProtocolDeviceSession(this, device, channel);
        _connectivity.Connected(device);
        if (channel is not null)
        {
            _link.Attach(device.Id, channel);
            _rpc.Reachable(device);
        }

        return session;
    }

    /// <summary>
    /// The device was heard from without a session (a CoAP request, like an HTTP one): it is active until its
    /// profile's inactivity timeout passes without another.
    /// </summary>
    public void Activity(Device device) => _connectivity.Activity(device);

    internal DeviceDataService Data => _data;

    internal TelemetryIngest Ingest => _ingest;

    internal ConnectivityTracker Connectivity => _connectivity;

    internal RpcService Rpc => _rpc;

    internal void Close(ProtocolDeviceSession session)
    {
        _connectivity.Disconnected(session.Device);
        if (session.Channel is not null && _link.Detach(session.Device.Id, session.Channel))
        {
            _rpc.Unreachable(session.Device);
        }
    }
}

/// <summary>One connection's view of its device: points in, replies to RPC, and closing.</summary>
public sealed class ProtocolDeviceSession : IDisposable
{
    private readonly ProtocolDevices _devices;
    private int _closed;

    internal ProtocolDeviceSession(ProtocolDevices devices, Device device, IDeviceCommandChannel? channel)
    {
        _devices = devices;
        Device = device;
        Channel = channel;
    }

    public Device Device { get; }

    public IDeviceCommandChannel? Channel { get; }

    /// <summary>
    /// Stores <paramref name="count"/> points from <paramref name="start"/> of <paramref name="points"/> (the list is
    /// copied; the caller may reuse it at once). The task completes when the points are accepted: after their commit
    /// when <c>Ingest:AckAfterCommit</c> is on, which is when a protocol's acknowledgement may go out.
    /// </summary>
    public ValueTask SubmitAsync(List<TelemetryPoint> points, int start, int count, CancellationToken cancellationToken = default)
    {
        _devices.Connectivity.Activity(Device);
        if (count == 0)
        {
            return ValueTask.CompletedTask;
        }

        var request = _devices.Ingest.Rent();
        request.DeviceSeq = Device.Seq;
        request.TenantId = Device.TenantId;
        for (var i = start; i < start + count; i++)
        {
            request.Points.Add(points[i]);
        }

        return _devices.Ingest.SubmitAsync(request, cancellationToken);
    }

    /// <summary>Stores client attributes (<c>{"k":v}</c>), as a device's attribute publish does.</summary>
    public Task SaveClientAttributesAsync(ReadOnlyMemory<byte> json, CancellationToken cancellationToken = default)
    {
        _devices.Connectivity.Activity(Device);
        return _devices.Data.SaveClientAttributesAsync(Device.Seq, json, cancellationToken);
    }

    /// <summary>The device did something that shows it is alive (a heartbeat).</summary>
    public void Activity() => _devices.Connectivity.Activity(Device);

    /// <summary>The device answered RPC call <paramref name="requestId"/>; <paramref name="failed"/> when it refused or failed the command.</summary>
    public Task<RpcReplyResult> ReplyAsync(int requestId, string replyJson, bool failed) => _devices.Rpc.ReplyAsync(Device, requestId, replyJson, failed);

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _closed, 1) == 0)
        {
            _devices.Close(this);
        }
    }
}
