using System.Collections.Concurrent;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;

namespace Taihu.Broker;

/// <summary>
/// The open connections (connected or still in CONNECT): the connection limit, closing them by identity or all at
/// once, and their keep-alive and CONNECT deadlines.
/// </summary>
internal sealed class ConnectionRegistry(BrokerOptions options, BrokerMetrics metrics)
{
    private readonly ConcurrentDictionary<long, MqttChannel> _channels = new();
    private long _nextId;
    private bool _closing;

    public int Count => _channels.Count;

    /// <summary>Adds a new connection; false when the broker is at its connection limit or shutting down.</summary>
    public bool TryRegister(MqttChannel channel, out long id)
    {
        id = Interlocked.Increment(ref _nextId);
        if (_channels.Count >= options.MaximumConnections)
        {
            return false;
        }

        _channels[id] = channel;
        if (Volatile.Read(ref _closing))
        {
            _channels.TryRemove(id, out _);
            return false;
        }

        metrics.ConnectionAccepted();
        return true;
    }

    public void Unregister(long id) => _channels.TryRemove(id, out _);

    /// <summary>The connected channel of <paramref name="clientId"/> in <paramref name="ns"/>, if any (tests and diagnostics).</summary>
    public MqttChannel? Find(string ns, string clientId)
    {
        foreach (var (_, channel) in _channels)
        {
            if (channel.IsConnected && channel.Identity.Namespace == ns && channel.ClientId == clientId)
            {
                return channel;
            }
        }

        return null;
    }

    /// <summary>Closes every connected client whose identity matches, with its will; returns how many.</summary>
    public int Disconnect(Func<ClientIdentity, bool> match, ReasonCode code, string? reason)
    {
        var closed = 0;
        foreach (var (_, channel) in _channels)
        {
            if (channel.IsConnected && match(channel.Identity))
            {
                channel.Close(code, reason, publishWill: true);
                closed++;
            }
        }

        return closed;
    }

    /// <summary>Refuses new connections from now on and closes every open one with <paramref name="code"/>.</summary>
    public void CloseAll(ReasonCode code, string reason)
    {
        // Set first: a connection that registers from now on refuses itself (see TryRegister), and every one
        // registered before is in the dictionary that the loop below walks.
        Volatile.Write(ref _closing, true);
        foreach (var (_, channel) in _channels)
        {
            channel.Close(code, reason, publishWill: false);
        }
    }

    /// <summary>
    /// Closes the connections whose keep alive or CONNECT deadline passed. The dictionary is walked in place: its
    /// Values property takes every lock and copies all entries into a new array each second (8 bytes per entry, a
    /// large object from about 10,600 entries), garbage that a server with nothing else to do collects in gen 2.
    /// </summary>
    public void CheckTimeouts(long timestamp)
    {
        foreach (var (_, channel) in _channels)
        {
            channel.CheckTimeouts(timestamp);
        }
    }
}
