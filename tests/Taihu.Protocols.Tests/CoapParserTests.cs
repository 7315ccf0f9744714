using System.Text;
using Taihu.Protocols.Coap;

namespace Taihu.Protocols.Tests;

/// <summary>CoAP datagrams from Debian's libcoap client, round trips of our writer, and every way a datagram can be malformed.</summary>
public sealed class CoapParserTests
{
    /// <summary>
    /// Captured from <c>coap-client-notls</c> (libcoap 4.3.1, Debian 12) sending to a plain UDP socket on port 56830:
    /// <c>-m post -e '{"temperature":21}' coap://127.0.0.1:56830/api/v1/A1_TEST_TOKEN/telemetry</c>.
    /// </summary>
    private const string LibcoapPost = "41023e150172ddfe436170690276310d0041315f544553545f544f4b454e0974656c656d65747279ff7b2274656d7065726174757265223a32317d";

    /// <summary><c>-m get -s 5 'coap://127.0.0.1:56830/api/v1/A1_TEST_TOKEN/attributes?clientKeys=a,b&amp;sharedKeys=c'</c> (Observe 0).</summary>
    private const string LibcoapObserve = "41010a81016012ddfe436170690276310d0041315f544553545f544f4b454e0a617474726962757465734d01636c69656e744b6579733d612c620c7368617265644b6579733d63";

    /// <summary>
    /// <c>-m post -b 16 -e '{"temperature":21.5,"humidity":40}' coap://127.0.0.1:56830/api/v1/T/telemetry</c>: the first
    /// Block1 (NUM 0, M, 16 bytes), Size1 34 and libcoap's Request-Tag (292, elective).
    /// </summary>
    private const string LibcoapBlock1 = "4102e7f90172ddfe4361706902763101540974656c656d65747279d10308d11422d4dbe0b47e9cff7b2274656d7065726174757265223a32";

    [Fact]
    public void LibcoapPost_Parses()
    {
        var datagram = Convert.FromHexString(LibcoapPost);
        var options = new CoapOptionRef[16];
        Assert.Equal(CoapParseStatus.Ok, CoapParser.TryParse(datagram, options, out var header));
        Assert.Equal(CoapType.Confirmable, header.Type);
        Assert.Equal(CoapCode.Post, header.Code);
        Assert.Equal(0x3e15, header.MessageId);
        Assert.Equal([0x01], header.Token(datagram).ToArray());
        Assert.Equal(["api", "v1", "A1_TEST_TOKEN", "telemetry"], Values(datagram, options.AsSpan(0, header.OptionCount), CoapOption.UriPath));
        Assert.Equal(56830u, CoapParser.ReadUInt(Value(datagram, options[0])));
        Assert.Equal("{\"temperature\":21}", Encoding.UTF8.GetString(header.Payload(datagram)));
    }

    [Fact]
    public void LibcoapObserve_HasObserveZero_AndQueries()
    {
        var datagram = Convert.FromHexString(LibcoapObserve);
        var options = new CoapOptionRef[16];
        Assert.Equal(CoapParseStatus.Ok, CoapParser.TryParse(datagram, options, out var header));
        var used = options.AsSpan(0, header.OptionCount);
        var observe = CoapParser.Find(used, CoapOption.Observe);
        Assert.True(observe >= 0);
        Assert.Equal(0, used[observe].Length);
        Assert.Equal(["clientKeys=a,b", "sharedKeys=c"], Values(datagram, used, CoapOption.UriQuery));
        Assert.Equal(0, header.PayloadLength);
    }

    [Fact]
    public void LibcoapBlock1_HasTheFirstBlock_AndSize1()
    {
        var datagram = Convert.FromHexString(LibcoapBlock1);
        var options = new CoapOptionRef[16];
        Assert.Equal(CoapParseStatus.Ok, CoapParser.TryParse(datagram, options, out var header));
        var used = options.AsSpan(0, header.OptionCount);
        Assert.True(CoapBlock.TryDecode(Value(datagram, used[CoapParser.Find(used, CoapOption.Block1)]), out var block));
        Assert.Equal(new CoapBlock(0, true, 0), block);
        Assert.Equal(16, block.Size);
        Assert.Equal(34u, CoapParser.ReadUInt(Value(datagram, used[CoapParser.Find(used, CoapOption.Size1)])));
        Assert.Equal(16, header.PayloadLength);
        Assert.Equal(292, used[^1].Number);
    }

    [Fact]
    public void Writer_ProducesWhatTheParserReads_ForEveryExtensionSize()
    {
        var random = new Random(7252);
        var buffer = new byte[4096];
        var options = new CoapOptionRef[32];
        for (var round = 0; round < 500; round++)
        {
            var token = new byte[random.Next(0, 9)];
            random.NextBytes(token);
            var numbers = new List<ushort>();
            var number = 0;
            for (var i = random.Next(0, 8); i > 0; i--)
            {
                // Deltas across the 4-bit, 8-bit (13) and 16-bit (14) encodings, repeats (delta 0) included.
                number += random.Next(3) switch { 0 => random.Next(0, 13), 1 => random.Next(13, 269), _ => random.Next(269, 2000) };
                if (number > ushort.MaxValue)
                {
                    break;
                }

                numbers.Add((ushort)number);
            }

            var values = numbers.Select(_ => { var v = new byte[random.Next(3) switch { 0 => random.Next(0, 13), 1 => random.Next(13, 269), _ => random.Next(269, 400) }]; random.NextBytes(v); return v; }).ToList();
            var payload = new byte[random.Next(0, 3) == 0 ? 0 : random.Next(1, 300)];
            random.NextBytes(payload);
            var type = (CoapType)random.Next(4);
            var messageId = (ushort)random.Next(65536);

            var writer = new CoapWriter(buffer, type, CoapCode.Post, messageId, token);
            for (var i = 0; i < numbers.Count; i++)
            {
                writer.Option(numbers[i], values[i]);
            }

            writer.Payload(payload);
            var datagram = writer.Written.ToArray();

            Assert.Equal(CoapParseStatus.Ok, CoapParser.TryParse(datagram, options, out var header));
            Assert.Equal((type, messageId), (header.Type, header.MessageId));
            Assert.Equal(token, header.Token(datagram).ToArray());
            Assert.Equal(numbers.Count, header.OptionCount);
            for (var i = 0; i < numbers.Count; i++)
            {
                Assert.Equal(numbers[i], options[i].Number);
                Assert.Equal(values[i], Value(datagram, options[i]).ToArray());
            }

            Assert.Equal(payload, header.Payload(datagram).ToArray());

            // Every strict prefix is either still well formed (cut at an option or payload boundary) or a format
            // error; never an exception or a read past the end.
            for (var cut = 0; cut < datagram.Length; cut++)
            {
                var status = CoapParser.TryParse(datagram.AsSpan(0, cut), options, out _);
                Assert.True(status is CoapParseStatus.Ok or CoapParseStatus.FormatError or CoapParseStatus.TooShort, $"prefix {cut}: {status}");
            }
        }
    }

    [Fact]
    public void UIntOptions_UseTheFewestBytes_AndBlockValuesRoundTrip()
    {
        var buffer = new byte[64];
        var writer = new CoapWriter(buffer, CoapType.Acknowledgement, CoapCode.Content, 1, []);
        writer.UIntOption(CoapOption.Observe, 0);
        writer.UIntOption(CoapOption.ContentFormat, CoapOption.FormatJson);
        writer.UIntOption(CoapOption.Block2, new CoapBlock(300, true, 6).Encode());
        Assert.Equal("60450001" + "60" + "6132" + "b212ce", Convert.ToHexString(writer.Written).ToLowerInvariant());
        var options = new CoapOptionRef[4];
        Assert.Equal(CoapParseStatus.Ok, CoapParser.TryParse(writer.Written.ToArray(), options, out var header));
        Assert.Equal(3, header.OptionCount);
        Assert.Equal(0, options[0].Length);
        Assert.Equal(1, options[1].Length);
        Assert.True(CoapBlock.TryDecode(Value(writer.Written.ToArray(), options[2]), out var block));
        Assert.Equal(new CoapBlock(300, true, 6), block);
        Assert.Equal(300 * 1024, block.Offset);
        Assert.False(CoapBlock.TryDecode([0x07], out _));
        Assert.False(CoapBlock.TryDecode([1, 2, 3, 4], out _));
        Assert.Equal(6, CoapBlock.ExponentFor(1024));
        Assert.Equal(5, CoapBlock.ExponentFor(1000));
        Assert.Equal(0, CoapBlock.ExponentFor(10));
    }

    public static TheoryData<string, string, CoapParseStatus> Hostile => new()
    {
        { "empty datagram", "", CoapParseStatus.TooShort },
        { "truncated header", "4001aa", CoapParseStatus.TooShort },
        { "version 0", "0001aabb", CoapParseStatus.UnknownVersion },
        { "version 2", "8001aabb", CoapParseStatus.UnknownVersion },
        { "token length 9", "4901aabb010203040506070809", CoapParseStatus.FormatError },
        { "token length 15", "4f01aabb010203040506070809101112131415", CoapParseStatus.FormatError },
        { "token longer than the datagram", "4401aabb0102", CoapParseStatus.FormatError },
        { "option delta 15 that is not the marker", "4001aabbf1", CoapParseStatus.FormatError },
        { "option length 15", "4001aabbbf", CoapParseStatus.FormatError },
        { "option value past the end", "4001aabbb5617069", CoapParseStatus.FormatError },
        { "delta extension byte missing", "4001aabbd0", CoapParseStatus.FormatError },
        { "two-byte delta extension cut", "4001aabbe001", CoapParseStatus.FormatError },
        { "length extension missing", "4001aabbbd", CoapParseStatus.FormatError },
        { "option number past 65535", "4001aabbe0ffff", CoapParseStatus.FormatError },
        { "payload marker with an empty payload", "4002aabbb3617069ff", CoapParseStatus.FormatError },
        { "Empty message with a token", "4100aabb01", CoapParseStatus.FormatError },
        { "Empty message with a payload", "4000aabbff01", CoapParseStatus.FormatError },
        // 'G' is 0x47: version 1, token length 7, and what follows is no option.
        { "garbage text", Convert.ToHexString("GET / HTTP/1.1\r\n\r\n"u8), CoapParseStatus.FormatError },
        { "garbage binary", "ffffffffffffffff", CoapParseStatus.UnknownVersion },
    };

    [Theory]
    [MemberData(nameof(Hostile))]
    public void HostileDatagrams_AreRefused_WithTheirReason(string name, string hex, CoapParseStatus expected)
    {
        var options = new CoapOptionRef[8];
        var status = CoapParser.TryParse(Convert.FromHexString(hex), options, out var header);
        Assert.True(expected == status, $"{name}: {status}");
        if (hex.Length >= 8 && hex[4..8] == "aabb" && status == CoapParseStatus.FormatError)
        {
            // The message id is known, so a CON can be answered with RST.
            Assert.Equal(0xaabb, header.MessageId);
        }
    }

    [Fact]
    public void MoreOptionsThanTheTable_IsReported()
    {
        var buffer = new byte[64];
        var writer = new CoapWriter(buffer, CoapType.Confirmable, CoapCode.Get, 1, []);
        for (var i = 0; i < 5; i++)
        {
            writer.Option(CoapOption.UriPath, "a"u8);
        }

        Assert.Equal(CoapParseStatus.TooManyOptions, CoapParser.TryParse(writer.Written.ToArray(), new CoapOptionRef[4], out _));
    }

    [Fact]
    public void RandomGarbage_NeverThrows()
    {
        var random = new Random(5683);
        var options = new CoapOptionRef[16];
        var bytes = new byte[256];
        for (var i = 0; i < 20_000; i++)
        {
            var length = random.Next(bytes.Length);
            random.NextBytes(bytes.AsSpan(0, length));
            bytes[0] = (byte)(0x40 | (bytes[0] & 0x3F));
            CoapParser.TryParse(bytes.AsSpan(0, length), options, out _);
        }
    }

    [Fact]
    public void Codes_FormatAsTheRfcWritesThem()
    {
        Assert.Equal("2.01", CoapCode.Format(CoapCode.Created));
        Assert.Equal("2.31", CoapCode.Format(CoapCode.Continue));
        Assert.Equal("4.13", CoapCode.Format(CoapCode.RequestEntityTooLarge));
        Assert.Equal("5.00", CoapCode.Format(CoapCode.InternalServerError));
    }

    private static ReadOnlySpan<byte> Value(byte[] datagram, CoapOptionRef option) => datagram.AsSpan(option.Offset, option.Length);

    private static List<string> Values(byte[] datagram, ReadOnlySpan<CoapOptionRef> options, ushort number)
    {
        var values = new List<string>();
        foreach (var option in options)
        {
            if (option.Number == number)
            {
                values.Add(Encoding.UTF8.GetString(datagram, option.Offset, option.Length));
            }
        }

        return values;
    }
}
