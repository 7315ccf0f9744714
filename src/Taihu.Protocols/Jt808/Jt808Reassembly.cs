namespace Taihu.Protocols.Jt808;

/// <summary>What <see cref="Jt808Reassembly.Add"/> made of a package.</summary>
public enum Jt808PackageOutcome
{
    /// <summary>This package completed the message: its body is in <c>whole</c>.</summary>
    Whole,

    /// <summary>Kept: packages of the message are still missing (or this one came again).</summary>
    Waiting,

    /// <summary>Refused: the reason says why; what was kept of the message is dropped.</summary>
    Refused,
}

/// <summary>
/// Puts sub-packaged messages (properties bit 13; package count and number in the header) back together for one
/// connection. The packages of one message share its id and count and carry consecutive serial numbers, so a
/// message is keyed by (id, count, serial of package 1). Bounded: at most <see cref="MaxPending"/> messages in the
/// making, at most <see cref="MaxPackages"/> packages each (128 KiB of body at 1,023 bytes a package); a message
/// whose packages do not all come within <see cref="Timeout"/> of its first is dropped and counted in
/// <see cref="Expired"/>. One owner, the connection's receive loop; not thread-safe.
/// </summary>
public sealed class Jt808Reassembly(TimeProvider time)
{
    private readonly Dictionary<(ushort Id, ushort Count, ushort FirstSerial), Pending> _pending = [];

    public int MaxPending { get; init; } = 4;

    public int MaxPackages { get; init; } = 128;

    public TimeSpan Timeout { get; init; } = TimeSpan.FromMinutes(5);

    public long Expired { get; private set; }

    public int PendingCount => _pending.Count;

    public Jt808PackageOutcome Add(Jt808Header header, ReadOnlySpan<byte> body, out byte[]? whole, out string? reason)
    {
        ArgumentNullException.ThrowIfNull(header);
        return Add(new Jt808HeaderFields(header.MessageId, header.Properties, header.ProtocolVersion, header.Serial, header.PackageCount, header.PackageNumber), body, out whole, out reason);
    }

    public Jt808PackageOutcome Add(Jt808HeaderFields header, ReadOnlySpan<byte> body, out byte[]? whole, out string? reason)
    {
        whole = null;
        reason = null;
        DropExpired();
        var count = header.PackageCount ?? 1;
        var number = header.PackageNumber ?? 1;
        if (count > MaxPackages)
        {
            reason = $"A message of {count} packages is more than the {MaxPackages} accepted.";
            return Jt808PackageOutcome.Refused;
        }

        var key = (header.MessageId, count, (ushort)(header.Serial - (number - 1)));
        if (!_pending.TryGetValue(key, out var pending))
        {
            if (_pending.Count >= MaxPending)
            {
                reason = $"More than {MaxPending} sub-packaged messages are waiting for packages on this connection.";
                return Jt808PackageOutcome.Refused;
            }

            pending = new Pending(count, time.GetTimestamp());
            _pending[key] = pending;
        }

        if (pending.Parts[number - 1] is null)
        {
            pending.Parts[number - 1] = body.ToArray();
            pending.Received++;
            pending.Bytes += body.Length;
        }

        if (pending.Received < count)
        {
            return Jt808PackageOutcome.Waiting;
        }

        _pending.Remove(key);
        whole = new byte[pending.Bytes];
        var at = 0;
        foreach (var part in pending.Parts)
        {
            part!.CopyTo(whole, at);
            at += part!.Length;
        }

        return Jt808PackageOutcome.Whole;
    }

    private void DropExpired()
    {
        if (_pending.Count == 0)
        {
            return;
        }

        List<(ushort, ushort, ushort)>? expired = null;
        foreach (var (key, pending) in _pending)
        {
            if (time.GetElapsedTime(pending.Started) > Timeout)
            {
                (expired ??= []).Add(key);
            }
        }

        if (expired is null)
        {
            return;
        }

        foreach (var key in expired)
        {
            _pending.Remove(key);
            Expired++;
        }
    }

    private sealed class Pending(int count, long started)
    {
        public byte[]?[] Parts { get; } = new byte[count][];

        public long Started { get; } = started;

        public int Received { get; set; }

        public int Bytes { get; set; }
    }
}
