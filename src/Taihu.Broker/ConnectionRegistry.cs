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

    // Deadlines (keep alive, CONNECT) by the whole second they fall in, so that a check looks only at the
    // connections due now instead of walking every connection each second: an idle server with 10,000
    // connections touched 10,000 cold objects a second for nothing. Only CheckTimeouts reads or changes the
    // buckets (its calls never overlap, see _checking); new connections reach it through _pending. The buckets
    // hold connection ids, not connections, so that one closed meanwhile is not kept alive until its deadline.
    private readonly ConcurrentQueue<long> _pending = new();
    private readonly Dictionary<long, List<long>> _due = [];
    private readonly Stack<List<long>> _spareLists = new();
    private long _cursor = long.MinValue;
    private int _checking;
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
        _pending.Enqueue(id);
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

    /// <summary>A snapshot of the connected clients of one namespace, for operators (a walk over every connection).</summary>
    public List<ConnectedClient> List(string ns)
    {
        var clients = new List<ConnectedClient>();
        foreach (var (_, channel) in _channels)
        {
            if (channel.IsConnected && channel.Identity.Namespace == ns && channel.ClientId is { } clientId)
            {
                var session = channel.Session;
                clients.Add(new ConnectedClient(clientId, channel.Identity.UserName, channel.Version, channel.RemoteEndPoint?.ToString(),
                    session?.SubscriptionFilters() ?? [], session?.QueuedCount ?? 0, session?.InflightCount ?? 0));
            }
        }

        clients.Sort(static (a, b) => string.CompareOrdinal(a.ClientId, b.ClientId));
        return clients;
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
    /// Closes the connections whose keep alive or CONNECT deadline passed. Each connection is looked at when its
    /// deadline is due: at its CONNECT deadline, and then once per keep-alive period and a half (a connection that
    /// was active meanwhile is put back at its new deadline). A connection without keep alive is looked at once.
    /// </summary>
    public void CheckTimeouts(long timestamp, long frequency)
    {
        if (Interlocked.Exchange(ref _checking, 1) != 0)
        {
            return; // a timer tick that came while the last one still runs: that one covers it
        }

        try
        {
            var now = timestamp / frequency;
            if (_cursor == long.MinValue)
            {
                _cursor = now;
            }

            while (_pending.TryDequeue(out var id))
            {
                Check(id, timestamp, frequency);
            }

            // Through the next second as well: a deadline a fraction of a second from now is looked at again at the
            // next tick (it stays in the bucket after the cursor), as the walk over every connection did.
            for (var second = _cursor; second <= now + 1; second++)
            {
                if (!_due.Remove(second, out var list))
                {
                    continue;
                }

                foreach (var id in list)
                {
                    Check(id, timestamp, frequency);
                }

                list.Clear();
                _spareLists.Push(list);
            }

            _cursor = now + 1;
        }
        finally
        {
            Volatile.Write(ref _checking, 0);
        }
    }

    /// <summary>Connections waiting for a deadline (tests).</summary>
    internal int ScheduledCount
    {
        get
        {
            var count = 0;
            foreach (var (_, list) in _due)
            {
                count += list.Count;
            }

            return count;
        }
    }

    private void Check(long id, long timestamp, long frequency)
    {
        if (!_channels.TryGetValue(id, out var channel))
        {
            return; // closed since
        }

        var deadline = channel.CheckTimeouts(timestamp);
        if (deadline == 0)
        {
            return; // closed now, or no keep alive: nothing more to check
        }

        // Rounded up, so that when its bucket comes the deadline has passed; never before the cursor.
        var second = Math.Max((deadline + frequency - 1) / frequency, _cursor);
        if (!_due.TryGetValue(second, out var list))
        {
            list = _spareLists.Count > 0 ? _spareLists.Pop() : [];
            _due[second] = list;
        }

        list.Add(id);
    }
}
