using System.Collections.Concurrent;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;
using Taihu.Platform.Devices;

namespace Taihu.Platform.Rpc;

/// <summary>A command handed to an HTTP long poll: the bytes to answer with, and whom to tell once they are written.</summary>
public sealed record RpcPollDelivery(byte[] Payload, IDeliveryListener Listener);

/// <summary>
/// A connection of another protocol (HJ 212, JT/T 808, CoAP) that can carry RPC commands to its device. The
/// protocol adapter turns the command into its own frame; it tells <paramref name="listener"/> when the device has
/// the command (by the protocol's acknowledgement, or once written where the protocol has none), and hands the
/// device's answer to <see cref="RpcService.ReplyAsync"/>.
/// </summary>
public interface IDeviceCommandChannel
{
    /// <summary>Sends command <paramref name="requestId"/>; false when this connection cannot carry it now (it is closing).</summary>
    /// <remarks>
    /// A method the protocol has no frame for is still "sent": the adapter answers it at once with a failed reply
    /// that names the methods it knows, so the caller learns why instead of waiting for a timeout.
    /// </remarks>
    bool TrySend(Device device, int requestId, string method, string paramsJson, IDeliveryListener listener);
}

/// <summary>
/// The way from the platform to a device for RPC commands, over whatever the device is reachable by now: its
/// MQTT connection (subscribed to <c>v1/devices/me/rpc/request/+</c>), an HTTP long poll it holds open, a
/// connection of another protocol (<see cref="IDeviceCommandChannel"/>), or its gateway's connection
/// (<c>v1/gateway/rpc</c>). This is the only RPC piece that knows about connections; the per-device RPC state
/// (<see cref="DeviceRpcOwner"/>) asks it to send and never holds a connection itself.
/// </summary>
public sealed class RpcDeviceLink(IMqttServerPublisher publisher)
{
    private readonly ConcurrentDictionary<Guid, int> _mqttConnections = new();
    private readonly ConcurrentDictionary<Guid, List<TaskCompletionSource<RpcPollDelivery>>> _polls = new();
    private readonly ConcurrentDictionary<Guid, IDeviceCommandChannel> _channels = new();

    /// <summary>Long polls one device may hold open at once (as for attribute updates).</summary>
    public const int MaxLongPollsPerDevice = 8;

    public void MqttConnected(Guid deviceId) => _mqttConnections.AddOrUpdate(deviceId, 1, (_, n) => n + 1);

    /// <summary>Returns whether the device has no MQTT connection left.</summary>
    public bool MqttDisconnected(Guid deviceId)
    {
        while (_mqttConnections.TryGetValue(deviceId, out var count))
        {
            if (count <= 1 ? _mqttConnections.TryRemove(new KeyValuePair<Guid, int>(deviceId, count)) : _mqttConnections.TryUpdate(deviceId, count - 1, count))
            {
                return count <= 1;
            }
        }

        return true;
    }

    public bool IsMqttConnected(Guid deviceId) => _mqttConnections.ContainsKey(deviceId);

    /// <summary>
    /// A connection of another protocol now carries the device's commands (the newest connection of a device
    /// does: a station that reconnects replaces its half-open predecessor).
    /// </summary>
    public void Attach(Guid deviceId, IDeviceCommandChannel channel) => _channels[deviceId] = channel;

    /// <summary>The connection closed; returns whether it was the one carrying the device's commands.</summary>
    public bool Detach(Guid deviceId, IDeviceCommandChannel channel) => _channels.TryRemove(new KeyValuePair<Guid, IDeviceCommandChannel>(deviceId, channel));

    public bool HasChannel(Guid deviceId) => _channels.ContainsKey(deviceId);

    /// <summary>Whether anything could carry a command to the device now (a connection, a poll, its gateway's connection).</summary>
    public bool IsReachable(Device device) =>
        IsMqttConnected(device.Id) || IsPolling(device.Id) || HasChannel(device.Id) || (device.GatewayId is { } gateway && IsMqttConnected(gateway));

    /// <summary>
    /// Sends command <paramref name="requestId"/> by the first way that reaches the device now; false when none
    /// does. <paramref name="listener"/> is told when it is delivered (PUBACK at QoS 1, written at QoS 0 or to a poll).
    /// </summary>
    public bool TrySend(Device device, int requestId, string method, string paramsJson, IDeliveryListener listener)
    {
        if (IsMqttConnected(device.Id))
        {
            var packet = new PublishPacket
            {
                Topic = DeviceSession.OwnTopic(device.Id, DeviceSession.RpcRequest, requestId),
                Payload = RpcRequest.DevicePayload(method, paramsJson),
                QoS = QoS.AtLeastOnce,
            };
            if (publisher.PublishHere(DeviceSession.Namespace(device.TenantId), packet, listener) > 0)
            {
                return true;
            }
        }

        if (TryHandToPoll(device.Id, new RpcPollDelivery(RpcRequest.DevicePayload(method, paramsJson, requestId), listener)))
        {
            return true;
        }

        if (_channels.TryGetValue(device.Id, out var channel) && channel.TrySend(device, requestId, method, paramsJson, listener))
        {
            return true;
        }

        if (device.GatewayId is { } gateway && IsMqttConnected(gateway))
        {
            var packet = new PublishPacket
            {
                Topic = DeviceSession.TopicPrefix(gateway) + "gateway/rpc",
                Payload = RpcRequest.GatewayPayload(device.Name, requestId, method, paramsJson),
                QoS = QoS.AtLeastOnce,
            };
            return publisher.PublishHere(DeviceSession.Namespace(device.TenantId), packet, listener) > 0;
        }

        return false;
    }

    private bool TryHandToPoll(Guid deviceId, RpcPollDelivery delivery)
    {
        if (!_polls.TryGetValue(deviceId, out var waiting))
        {
            return false;
        }

        lock (waiting)
        {
            // The oldest poll first; one that timed out meanwhile refuses and the next is tried.
            while (waiting.Count > 0)
            {
                var waiter = waiting[0];
                waiting.RemoveAt(0);
                if (waiter.TrySetResult(delivery))
                {
                    return true;
                }
            }
        }

        return false;
    }

    public bool IsPolling(Guid deviceId) => _polls.TryGetValue(deviceId, out var list) && Count(list) > 0;

    private static int Count(List<TaskCompletionSource<RpcPollDelivery>> list)
    {
        lock (list)
        {
            return list.Count;
        }
    }

    /// <summary>Registers a long poll; <paramref name="registered"/> runs once it can receive (to send what waits).</summary>
    public async Task<RpcPollDelivery?> WaitForCommandAsync(Guid deviceId, TimeSpan timeout, TimeProvider time, Action registered, CancellationToken cancellationToken)
    {
        var waiter = new TaskCompletionSource<RpcPollDelivery>(TaskCreationOptions.RunContinuationsAsynchronously);
        var list = _polls.GetOrAdd(deviceId, _ => []);
        lock (list)
        {
            if (list.Count >= MaxLongPollsPerDevice)
            {
                throw PlatformException.TooManyRequests($"At most {MaxLongPollsPerDevice} requests of one device may wait for RPC commands at once.", TimeSpan.FromSeconds(5));
            }

            list.Add(waiter);
        }

        registered();
        try
        {
            return await waiter.Task.WaitAsync(timeout, time, cancellationToken);
        }
        catch (TimeoutException)
        {
            // A command handed over in the same instant as the timeout is still the poll's.
            return waiter.TrySetCanceled(CancellationToken.None) ? null : await waiter.Task;
        }
        finally
        {
            // A command handed to a client that went away is not delivered: its call's timeout decides.
            waiter.TrySetCanceled(CancellationToken.None);
            lock (list)
            {
                list.Remove(waiter);
            }
        }
    }
}
