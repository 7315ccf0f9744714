namespace Taihu.Protocols.Hj212;

/// <summary>What <see cref="Hj212Reassembly.Add"/> made of a packet.</summary>
public enum Hj212PacketOutcome
{
    /// <summary>The message is whole (it was never split, or this packet completed it).</summary>
    Whole,

    /// <summary>Kept: packets of the message are still missing (or this one came again).</summary>
    Waiting,

    /// <summary>Refused: the reason says why; packets kept for the message so far are dropped.</summary>
    Refused,
}

/// <summary>
/// Puts split messages (Flag bit 1, <c>PNUM</c> packets numbered by <c>PNO</c> from 1) back together, for one
/// connection: the packets of a message share its <c>MN</c>, <c>QN</c> and <c>CN</c>; the whole message is the
/// first packet's fields with the packets' CP joined by <c>;</c> in <c>PNO</c> order. Bounded: at most
/// <see cref="MaxPending"/> messages in the making and <see cref="MaxBytes"/> of CP each; a message whose packets do
/// not all come within <see cref="Timeout"/> of its first is dropped (counted in <see cref="Expired"/>). One owner:
/// the connection's receive loop; not thread-safe.
/// </summary>
public sealed class Hj212Reassembly(TimeProvider time)
{
    private readonly Dictionary<(string? Mn, string? Qn, string? Cn), Pending> _pending = [];

    public int MaxPending { get; init; } = 16;

    public int MaxBytes { get; init; } = 64 * 1024;

    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>Messages dropped because their packets did not all come in time.</summary>
    public long Expired { get; private set; }

    /// <summary>Messages in the making.</summary>
    public int PendingCount => _pending.Count;

    public Hj212PacketOutcome Add(Hj212Message packet, out Hj212Message? whole, out string? reason)
    {
        ArgumentNullException.ThrowIfNull(packet);
        whole = null;
        reason = null;
        DropExpired();
        if (!packet.IsSplit)
        {
            whole = packet;
            return Hj212PacketOutcome.Whole;
        }

        var count = packet.PacketCount!.Value;
        if (packet.PacketNumber is not { } number)
        {
            reason = "A split packet (Flag bit 1, PNUM > 1) has no PNO.";
            return Hj212PacketOutcome.Refused;
        }

        var key = (packet.Mn, packet.Qn, packet.Cn);
        if (!_pending.TryGetValue(key, out var pending))
        {
            if (_pending.Count >= MaxPending)
            {
                reason = $"More than {MaxPending} split messages are waiting for packets on this connection.";
                return Hj212PacketOutcome.Refused;
            }

            pending = new Pending(count, time.GetTimestamp());
            _pending[key] = pending;
        }
        else if (pending.Parts.Length != count)
        {
            _pending.Remove(key);
            reason = $"PNUM changed from {pending.Parts.Length} to {count} within one message (QN {packet.Qn}).";
            return Hj212PacketOutcome.Refused;
        }

        if (pending.Parts[number - 1] is not null)
        {
            // Sent again (the station did not see an answer): the first copy stands.
            return Hj212PacketOutcome.Waiting;
        }

        pending.Bytes += packet.Cp.Length;
        if (pending.Bytes > MaxBytes)
        {
            _pending.Remove(key);
            reason = $"The split message (QN {packet.Qn}) is larger than {MaxBytes} characters of CP.";
            return Hj212PacketOutcome.Refused;
        }

        pending.Parts[number - 1] = packet;
        if (++pending.Received < count)
        {
            return Hj212PacketOutcome.Waiting;
        }

        _pending.Remove(key);
        var cp = new System.Text.StringBuilder(pending.Bytes + count);
        foreach (var part in pending.Parts)
        {
            if (part!.Cp.Length == 0)
            {
                continue;
            }

            if (cp.Length > 0 && cp[^1] != ';')
            {
                cp.Append(';');
            }

            cp.Append(part.Cp);
        }

        var first = pending.Parts[0]!;
        whole = first with { Flag = first.Flag & ~2, PacketCount = null, PacketNumber = null, Cp = cp.ToString() };
        return Hj212PacketOutcome.Whole;
    }

    /// <summary>Drops the messages whose packets did not all come in time (<see cref="Add"/> does it first; a connection calls it for frames that are not split).</summary>
    public void DropExpired()
    {
        if (_pending.Count == 0)
        {
            return;
        }

        List<(string?, string?, string?)>? expired = null;
        foreach (var (key, pending) in _pending)
        {
            if (time.GetElapsedTime(pending.Started) > Timeout)
            {
                (expired ??= []).Add(key);
            }
        }

        if (expired is not null)
        {
            foreach (var key in expired)
            {
                _pending.Remove(key);
                Expired++;
            }
        }
    }

    private sealed class Pending(int count, long started)
    {
        public Hj212Message?[] Parts { get; } = new Hj212Message?[count];

        public long Started { get; } = started;

        public int Received { get; set; }

        public int Bytes { get; set; }
    }
}
