using System.Buffers;
using System.Buffers.Text;
using System.Text.Json;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// What a benchmark device reads from and writes to ThingsBoard's RPC topics: the request id at the end of
/// <c>v1/devices/me/rpc/request/{id}</c>, the bench's sequence number in the command's <c>params</c>
/// (<c>{"method":..,"params":{"seq":N}}</c>), and the reply topic. Anything else is refused (false), never thrown.
/// </summary>
public static class RpcMessages
{
    public static ReadOnlySpan<byte> RequestPrefix => "v1/devices/me/rpc/request/"u8;

    public static ReadOnlySpan<byte> ResponsePrefix => "v1/devices/me/rpc/response/"u8;

    /// <summary>The id of a command topic: a positive decimal int after the request prefix, nothing else.</summary>
    public static bool TryParseRequestId(ReadOnlySpan<byte> topic, out int id)
    {
        id = 0;
        if (!topic.StartsWith(RequestPrefix))
        {
            return false;
        }

        var digits = topic[RequestPrefix.Length..];
        if (digits.Length is 0 or > 10)
        {
            return false;
        }

        foreach (var b in digits)
        {
            if (b is < (byte)'0' or > (byte)'9')
            {
                return false;
            }
        }

        return Utf8Parser.TryParse(digits, out id, out var consumed) && consumed == digits.Length && id > 0;
    }

    /// <summary>The reply topic for command <paramref name="id"/>.</summary>
    public static byte[] ResponseTopic(int id)
    {
        Span<byte> digits = stackalloc byte[11];
        Utf8Formatter.TryFormat(id, digits, out var written);
        var topic = new byte[ResponsePrefix.Length + written];
        ResponsePrefix.CopyTo(topic);
        digits[..written].CopyTo(topic.AsSpan(ResponsePrefix.Length));
        return topic;
    }

    /// <summary>
    /// The command's <c>params.seq</c> (an integer); false for anything else. The whole payload must be valid
    /// JSON: a command cut short is a server bug the run must see, not a sequence number.
    /// </summary>
    public static bool TryReadSequence(ReadOnlySequence<byte> payload, out long sequence)
    {
        sequence = 0;
        var found = false;
        try
        {
            var reader = new Utf8JsonReader(payload, new JsonReaderOptions { MaxDepth = 16 });
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return false;
            }

            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var isParams = reader.ValueTextEquals("params"u8);
                reader.Read();
                if (!isParams || reader.TokenType != JsonTokenType.StartObject)
                {
                    reader.Skip();
                    continue;
                }

                while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
                {
                    var isSeq = reader.ValueTextEquals("seq"u8);
                    reader.Read();
                    if (isSeq)
                    {
                        found = reader.TokenType == JsonTokenType.Number && reader.TryGetInt64(out sequence);
                    }

                    reader.Skip();
                }
            }

            // The reader has seen the closing brace of the object; anything after it, or nothing, throws or ends here.
            return found && !reader.Read();
        }
        catch (JsonException)
        {
            return false;
        }
    }

    /// <summary>A reply <c>{"seq":N}</c> as the device sends it (the caller checks that the HTTP answer echoes the call).</summary>
    public static byte[] Reply(long sequence) => System.Text.Encoding.UTF8.GetBytes("{\"seq\":" + sequence.ToString(System.Globalization.CultureInfo.InvariantCulture) + "}");
}

/// <summary>
/// Checks that each device receives its persistent calls once each, in the order they were made: call k of a
/// device carries <c>seq</c> k, so the device must see 0, 1, 2, .. One device's commands arrive on its own
/// receive loop, one at a time, so its slots need no lock; the totals are shared.
/// </summary>
public sealed class DeliveryOrder
{
    private readonly long[] _next;
    private readonly int[] _inOrder;
    private readonly int _perDevice;
    private long _received;
    private long _outOfOrder;
    private long _duplicates;
    private long _unexpected;

    public DeliveryOrder(int devices, int perDevice)
    {
        _next = new long[devices];
        _inOrder = new int[devices];
        _perDevice = perDevice;
    }

    public long Received => Interlocked.Read(ref _received);

    /// <summary>A call that came before one made earlier (a gap: the earlier one came late or never).</summary>
    public long OutOfOrder => Interlocked.Read(ref _outOfOrder);

    /// <summary>A call that came again after it, or a later one, had already come (a redelivery, or a late one).</summary>
    public long Duplicates => Interlocked.Read(ref _duplicates);

    /// <summary>A command that was not one of the run's calls (no seq, or one out of range).</summary>
    public long Unexpected => Interlocked.Read(ref _unexpected);

    /// <summary>Calls that came exactly when due (the device had all before them), summed over the devices.</summary>
    public long InOrder
    {
        get
        {
            long sum = 0;
            foreach (var n in _inOrder)
            {
                sum += n;
            }

            return sum;
        }
    }

    /// <summary>Devices that got all their calls, each once, in order.</summary>
    public int CompleteDevices
    {
        get
        {
            var complete = 0;
            foreach (var n in _inOrder)
            {
                complete += n == _perDevice ? 1 : 0;
            }

            return complete;
        }
    }

    /// <summary>Device <paramref name="device"/> received the call with <paramref name="sequence"/>.</summary>
    public void Record(int device, long sequence)
    {
        Interlocked.Increment(ref _received);
        if (sequence < 0 || sequence >= _perDevice || (uint)device >= (uint)_next.Length)
        {
            Interlocked.Increment(ref _unexpected);
            return;
        }

        var expected = _next[device];
        if (sequence == expected)
        {
            _next[device] = expected + 1;
            _inOrder[device]++;
        }
        else if (sequence < expected)
        {
            Interlocked.Increment(ref _duplicates);
        }
        else
        {
            // Skipped ahead: the calls between are out of order; the device goes on from here.
            Interlocked.Increment(ref _outOfOrder);
            _next[device] = sequence + 1;
        }
    }
}
