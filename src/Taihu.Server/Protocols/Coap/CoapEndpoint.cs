using System.Buffers;
using System.Net;
using System.Net.Sockets;
using Taihu.Broker.Extensibility;
using Taihu.Protocols.Coap;

namespace Taihu.Server.Protocols.Coap;

/// <summary>
/// What the listener keeps for one remote endpoint (address and port): the responses it remembers for duplicate
/// detection, its block-wise uploads in progress, its observations, and the confirmable messages sent to it that
/// wait for an ACK. Every field is guarded by <see cref="Gate"/>; nothing here does I/O.
/// </summary>
internal sealed class CoapEndpoint(SocketAddress address)
{
    private readonly Dictionary<ushort, CoapExchange> _exchanges = [];
    private readonly Queue<CoapExchange> _exchangeOrder = new();
    private int _nextMessageId = Random.Shared.Next(ushort.MaxValue + 1);

    public object Gate { get; } = new();

    /// <summary>Its own copy of the address, the key of the endpoint table.</summary>
    public SocketAddress Address { get; } = address;

    public IPEndPoint Remote { get; } = (IPEndPoint)new IPEndPoint(address.Family == AddressFamily.InterNetworkV6 ? IPAddress.IPv6Any : IPAddress.Any, 0).Create(address);

    /// <summary>When the endpoint last sent anything (timestamp of the listener's TimeProvider).</summary>
    public long LastHeard { get; set; }

    public Dictionary<string, CoapUpload> Uploads { get; } = new(StringComparer.Ordinal);

    public List<CoapObservation> Observations { get; } = [];

    public Dictionary<ushort, CoapOutgoing> Outgoing { get; } = [];

    /// <summary>The access token this endpoint last authenticated with, its device, and until when that holds.</summary>
    public (byte[] Token, Platform.Devices.Device Device, long Until)? Authenticated { get; set; }

    /// <summary>Dropped from the endpoint table by the sweeper; a datagram that found it just before looks it up again.</summary>
    public bool Removed { get; set; }

    public ushort NextMessageId() => (ushort)Interlocked.Increment(ref _nextMessageId);

    /// <summary>Nothing left to keep: the table may drop the endpoint once it has been silent long enough.</summary>
    public bool IsEmpty => _exchanges.Count == 0 && Uploads.Count == 0 && Observations.Count == 0 && Outgoing.Count == 0;

    /// <summary>
    /// The exchange of an incoming request with message id <paramref name="messageId"/>: a new one (handle it), or
    /// the one already seen (a duplicate: answer it with its remembered response, or ignore it while in progress).
    /// </summary>
    public CoapExchange Begin(ushort messageId, CoapType type, long now, long lifetime, int max, out bool duplicate)
    {
        if (_exchanges.TryGetValue(messageId, out var seen) && seen.ExpiresAt > now)
        {
            duplicate = true;
            return seen;
        }

        duplicate = false;
        Expire(now);
        while (_exchanges.Count >= max && _exchangeOrder.TryDequeue(out var oldest))
        {
            Forget(oldest);
        }

        var exchange = new CoapExchange(messageId, type, now + lifetime) { Started = now };
        _exchanges[messageId] = exchange;
        _exchangeOrder.Enqueue(exchange);
        return exchange;
    }

    /// <summary>Forgets the exchanges whose lifetime has passed (oldest first: they were added in order).</summary>
    public void Expire(long now)
    {
        while (_exchangeOrder.TryPeek(out var oldest) && oldest.ExpiresAt <= now)
        {
            _exchangeOrder.Dequeue();
            Forget(oldest);
        }

        List<string>? stale = null;
        foreach (var (key, upload) in Uploads)
        {
            if (upload.ExpiresAt <= now)
            {
                (stale ??= []).Add(key);
            }
        }

        if (stale is not null)
        {
            foreach (var key in stale)
            {
                Uploads.Remove(key, out var upload);
                upload!.Dispose();
            }
        }
    }

    private void Forget(CoapExchange exchange)
    {
        if (_exchanges.TryGetValue(exchange.MessageId, out var current) && ReferenceEquals(current, exchange))
        {
            _exchanges.Remove(exchange.MessageId);
        }
    }
}

/// <summary>How far an incoming request has got.</summary>
internal enum CoapExchangeState
{
    /// <summary>Being handled; a duplicate is ignored.</summary>
    InProgress,

    /// <summary>A confirmable request that took long: acknowledged with an empty ACK, its response follows separately.</summary>
    Acknowledged,

    /// <summary>Answered; a duplicate gets <see cref="CoapExchange.Response"/> again (nothing, for one that needed no answer).</summary>
    Answered,
}

internal sealed class CoapExchange(ushort messageId, CoapType type, long expiresAt)
{
    public ushort MessageId { get; } = messageId;

    public CoapType Type { get; } = type;

    public long ExpiresAt { get; } = expiresAt;

    public long Started { get; init; }

    public CoapExchangeState State { get; set; }

    public byte[]? Response { get; set; }
}

/// <summary>A block-wise upload (Block1) being assembled, in a pooled buffer.</summary>
internal sealed class CoapUpload(long expiresAt) : IDisposable
{
    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(1024);

    public long ExpiresAt { get; set; } = expiresAt;

    public int Received { get; private set; }

    public ReadOnlyMemory<byte> Body => _buffer.AsMemory(0, Received);

    public void Append(ReadOnlySpan<byte> block)
    {
        if (Received + block.Length > _buffer.Length)
        {
            var larger = ArrayPool<byte>.Shared.Rent(Math.Max(_buffer.Length * 2, Received + block.Length));
            _buffer.AsSpan(0, Received).CopyTo(larger);
            ArrayPool<byte>.Shared.Return(_buffer);
            _buffer = larger;
        }

        block.CopyTo(_buffer.AsSpan(Received));
        Received += block.Length;
    }

    /// <summary>The whole body, copied out (the upload is disposed of after).</summary>
    public byte[] ToArray() => _buffer.AsSpan(0, Received).ToArray();

    public void Dispose()
    {
        var buffer = Interlocked.Exchange(ref _buffer, []);
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}

/// <summary>A confirmable message the listener sent (a notification or a separate response), waiting for its ACK.</summary>
internal sealed class CoapOutgoing(byte[] datagram, CoapObservation? observation, IDeliveryListener? delivery)
{
    public byte[] Datagram { get; } = datagram;

    public CoapObservation? Observation { get; } = observation;

    public IDeliveryListener? Delivery { get; } = delivery;

    public int Transmissions { get; set; } = 1;

    public TimeSpan Timeout { get; set; }

    public ITimer? Timer { get; set; }
}
