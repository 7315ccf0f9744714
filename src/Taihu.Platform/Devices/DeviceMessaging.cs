using System.Buffers;
using System.Collections.Concurrent;
using System.Text.Json;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Devices;

/// <summary>
/// Messages from the platform to devices: shared-attribute updates (over MQTT to the device, to its gateway, and
/// to HTTP long polls), and answers to requests.
/// </summary>
public sealed class DeviceMessaging
{
    private readonly IMqttServerPublisher _publisher;
    private int _polls;

    public DeviceMessaging(IMqttServerPublisher publisher, System.Diagnostics.Metrics.IMeterFactory? meters = null)
    {
        ArgumentNullException.ThrowIfNull(publisher);
        _publisher = publisher;
        var meter = meters?.Create(new System.Diagnostics.Metrics.MeterOptions(Telemetry.PlatformMetrics.MeterName)) ?? new System.Diagnostics.Metrics.Meter(Telemetry.PlatformMetrics.MeterName);
        meter.CreateObservableGauge("taihu.device.attribute_polls", () => Volatile.Read(ref _polls), "{request}", "HTTP long polls waiting for a shared-attribute update.");
    }

    private readonly ConcurrentDictionary<Guid, List<TaskCompletionSource<byte[]>>> _waiters = new();

    /// <summary>Publishes <paramref name="payload"/> on a broker topic of a tenant, at QoS 1.</summary>
    public void Publish(Guid tenantId, string topic, byte[] payload) => Publish(DeviceSession.Namespace(tenantId), topic, payload);

    public void Publish(string ns, string topic, byte[] payload) =>
        _publisher.Publish(ns, new PublishPacket { Topic = topic, Payload = payload, QoS = QoS.AtLeastOnce });

    /// <summary>Tells the device (and its gateway, and any long poll) that shared attributes changed.</summary>
    public void SharedAttributesChanged(Device device, string? gatewayDeviceName, IReadOnlyList<AttributeEntry> entries)
    {
        var payload = WriteObject(entries);
        Publish(device.TenantId, DeviceSession.TopicPrefix(device.Id) + "attributes", payload);
        if (device.GatewayId is { } gateway && gatewayDeviceName is not null)
        {
            var buffer = new ArrayBufferWriter<byte>();
            using (var writer = new Utf8JsonWriter(buffer))
            {
                writer.WriteStartObject();
                writer.WriteString("device", gatewayDeviceName);
                writer.WritePropertyName("data");
                WriteEntries(writer, entries);
                writer.WriteEndObject();
            }

            Publish(device.TenantId, DeviceSession.TopicPrefix(gateway) + "gateway/attributes", buffer.WrittenSpan.ToArray());
        }

        if (_subscribers.TryGetValue(device.Id, out var subscribers))
        {
            foreach (var subscriber in subscribers)
            {
                subscriber.OnSharedAttributes(payload);
            }
        }

        if (_waiters.TryGetValue(device.Id, out var waiting))
        {
            lock (waiting)
            {
                foreach (var waiter in waiting)
                {
                    waiter.TrySetResult(payload);
                }

                waiting.Clear();
            }
        }
    }

    /// <summary>
    /// Long polls one device may hold open at once. A device needs one; a few allow for a retry that overlaps an
    /// abandoned request. Without a bound, one token could hold thousands of connections for an hour each.
    /// </summary>
    public const int MaxLongPollsPerDevice = 8;

    /// <summary>Waits for the next shared-attribute update of a device (HTTP long poll); null on timeout, 429 past <see cref="MaxLongPollsPerDevice"/>.</summary>
    public async Task<byte[]?> WaitForUpdateAsync(Guid deviceId, TimeSpan timeout, TimeProvider time, CancellationToken cancellationToken)
    {
        var waiter = new TaskCompletionSource<byte[]>(TaskCreationOptions.RunContinuationsAsynchronously);
        var list = _waiters.GetOrAdd(deviceId, _ => []);
        lock (list)
        {
            if (list.Count >= MaxLongPollsPerDevice)
            {
                throw PlatformException.TooManyRequests($"At most {MaxLongPollsPerDevice} requests of one device may wait for attribute updates at once.", TimeSpan.FromSeconds(5));
            }

            list.Add(waiter);
        }

        Interlocked.Increment(ref _polls);
        try
        {
            return await waiter.Task.WaitAsync(timeout, time, cancellationToken);
        }
        catch (TimeoutException)
        {
            return null;
        }
        finally
        {
            Interlocked.Decrement(ref _polls);
            lock (list)
            {
                list.Remove(waiter);
            }
        }
    }

    private readonly ConcurrentDictionary<Guid, System.Collections.Immutable.ImmutableArray<ISharedAttributeSubscriber>> _subscribers = new();

    /// <summary>
    /// Tells <paramref name="subscriber"/> of every shared-attribute update of the device until the returned handle is
    /// disposed (a CoAP observation of <c>.../attributes</c>). The subscriber is called on the updating thread and
    /// must only hand the payload on.
    /// </summary>
    public IDisposable SubscribeSharedAttributes(Guid deviceId, ISharedAttributeSubscriber subscriber)
    {
        _subscribers.AddOrUpdate(deviceId, static (_, s) => [s], static (_, list, s) => list.Add(s), subscriber);
        return new Subscription(this, deviceId, subscriber);
    }

    private void Unsubscribe(Guid deviceId, ISharedAttributeSubscriber subscriber)
    {
        while (_subscribers.TryGetValue(deviceId, out var list))
        {
            var rest = list.Remove(subscriber);
            if (rest.IsEmpty ? _subscribers.TryRemove(new KeyValuePair<Guid, System.Collections.Immutable.ImmutableArray<ISharedAttributeSubscriber>>(deviceId, list)) : _subscribers.TryUpdate(deviceId, rest, list))
            {
                return;
            }
        }
    }

    private sealed class Subscription(DeviceMessaging owner, Guid deviceId, ISharedAttributeSubscriber subscriber) : IDisposable
    {
        private int _disposed;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) == 0)
            {
                owner.Unsubscribe(deviceId, subscriber);
            }
        }
    }

    /// <summary>Whether a long poll is waiting for the device (tests use this to know when to push).</summary>
    public bool IsWaiting(Guid deviceId) => _waiters.TryGetValue(deviceId, out var list) && list.Count > 0;

    /// <summary><c>{"k":v,..}</c> of the entries.</summary>
    public static byte[] WriteObject(IReadOnlyList<AttributeEntry> entries)
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            WriteEntries(writer, entries);
        }

        return buffer.WrittenSpan.ToArray();
    }

    public static void WriteEntries(Utf8JsonWriter writer, IReadOnlyList<AttributeEntry> entries)
    {
        writer.WriteStartObject();
        foreach (var entry in entries)
        {
            writer.WritePropertyName(entry.Key);
            entry.Value.WriteTo(writer);
        }

        writer.WriteEndObject();
    }
}

/// <summary>Receives a device's shared-attribute updates (<c>{"k":v}</c>) for a listener of another protocol.</summary>
public interface ISharedAttributeSubscriber
{
    void OnSharedAttributes(byte[] payload);
}
