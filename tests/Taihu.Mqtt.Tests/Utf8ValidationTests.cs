using System.Buffers;
using System.Text;
using Taihu.Mqtt.Packets;
using Taihu.Mqtt.Tests.Support;

namespace Taihu.Mqtt.Tests;

/// <summary>
/// The spec's rules for strings (MQTT 5.0 section 1.5.4): well-formed UTF-8 per RFC 3629 (no overlong forms, no
/// surrogates, nothing above U+10FFFF) and no U+0000; control characters, noncharacters and a leading BOM are legal.
/// </summary>
public class Utf8ValidationTests
{
    public static TheoryData<string, string> ValidUtf8 => new()
    {
        { "empty", "" },
        { "ASCII", "61 2F 62" },
        { "two-byte é", "C3A9" },
        { "three-byte €", "E282AC" },
        { "four-byte 😀", "F09F9880" },
        { "BOM U+FEFF", "EFBBBF" },
        { "noncharacter U+FFFF", "EFBFBF" },
        { "control U+0001", "01" },
        { "DEL U+007F", "7F" },
        { "C1 control U+0085", "C285" },
        { "last before surrogates U+D7FF", "ED9FBF" },
        { "first after surrogates U+E000", "EE8080" },
        { "largest code point U+10FFFF", "F48FBFBF" },
    };

    public static TheoryData<string, string> InvalidUtf8 => new()
    {
        { "U+0000", "00" },
        { "U+0000 inside", "61 00 62" },
        { "overlong NUL C0 80", "C080" },
        { "overlong '/' C0 AF", "C0AF" },
        { "overlong C1 BF", "C1BF" },
        { "overlong three-byte '/'", "E080AF" },
        { "overlong three-byte U+07FF", "E09FBF" },
        { "overlong four-byte '/'", "F08080AF" },
        { "overlong four-byte U+FFFF", "F08FBFBF" },
        { "high surrogate ED A0 80", "EDA080" },
        { "low surrogate ED BF BF", "EDBFBF" },
        { "CESU-8 surrogate pair", "EDA0BD EDB880" },
        { "above U+10FFFF", "F4908080" },
        { "lead byte F5", "F5808080" },
        { "byte FF", "FF" },
        { "byte FE", "FE" },
        { "lone continuation 80", "80" },
        { "lone continuation BF after ASCII", "61 BF" },
        { "truncated two-byte", "C3" },
        { "truncated three-byte", "E282" },
        { "truncated four-byte", "F09F98" },
        { "two-byte with ASCII continuation", "C328" },
        { "three-byte with ASCII in the middle", "E228A1" },
    };

    [Theory]
    [MemberData(nameof(ValidUtf8))]
    public void Well_formed_strings_without_NUL_are_valid(string name, string hex)
    {
        Assert.True(Utf8Validation.IsValidMqttString(Hex.Parse(hex)), name);
    }

    [Theory]
    [MemberData(nameof(InvalidUtf8))]
    public void Ill_formed_strings_and_NUL_are_invalid(string name, string hex)
    {
        Assert.False(Utf8Validation.IsValidMqttString(Hex.Parse(hex)), name);
    }

    [Theory]
    [MemberData(nameof(ValidUtf8))]
    public void The_reader_accepts_a_valid_string_as_a_user_property(string name, string hex)
    {
        // The user property value may be empty and may be anything well-formed, so every valid case fits.
        var value = Hex.Parse(hex);
        var packet = Hex.Parse($"30 {10 + value.Length:X2} 000161 {6 + value.Length:X2} 26 0001 6B {value.Length:X4} {hex}");
        var reader = new PacketReader { Version = ProtocolVersion.V500 };
        var buffer = new ReadOnlySequence<byte>(packet);
        Assert.True(reader.TryRead(ref buffer, out var decoded), name);
        var user = Assert.Single(((PublishPacket)decoded).Properties!.UserProperties!);
        Assert.Equal(Encoding.UTF8.GetString(value), user.Value);
    }

    [Theory]
    [MemberData(nameof(InvalidUtf8))]
    public void The_reader_refuses_an_invalid_string_in_a_topic_as_malformed(string name, string hex)
    {
        var topic = Hex.Parse(hex);
        var packet = Hex.Parse($"30 {2 + topic.Length:X2} {topic.Length:X4} {hex}");
        var reader = new PacketReader { Version = ProtocolVersion.V311 };
        var buffer = new ReadOnlySequence<byte>(packet);
        var ex = Assert.Throws<MqttProtocolException>(() => reader.TryRead(ref buffer, out _));
        Assert.True(ex.ReasonCode == ReasonCode.MalformedPacket, $"{name}: {ex.ReasonCode}");
    }

    [Theory]
    [InlineData("")]
    [InlineData("abc")]
    [InlineData("中文/温度")]
    [InlineData("😀")]
    [InlineData("\uFEFFx")]
    [InlineData("\u0001\u007F\uFFFF")]
    public void Strings_that_encode_to_valid_MQTT_strings_are_valid(string text)
    {
        Assert.True(Utf8Validation.IsValidMqttString(text.AsSpan()));
        Assert.True(Utf8Validation.IsValidMqttString(Encoding.UTF8.GetBytes(text)));
    }

    // UTF-16 code units in hex: xunit would replace a lone surrogate in a string argument with U+FFFD.
    [Theory]
    [InlineData("0000")]
    [InlineData("0061 0000 0062")]
    [InlineData("D83D")]
    [InlineData("D83D 0061")]
    [InlineData("0061 DE00")]
    [InlineData("DE00 D83D")]
    [InlineData("D83D D83D DE00 0078")]
    public void Strings_with_NUL_or_lone_surrogates_are_invalid(string utf16)
    {
        var text = new string(utf16.Split(' ').Select(unit => (char)Convert.ToUInt16(unit, 16)).ToArray());
        Assert.False(Utf8Validation.IsValidMqttString(text.AsSpan()));
    }

    /// <summary>
    /// Against an independent oracle (a throwing decoder plus a NUL check), over byte strings that mix valid
    /// sequences with random bytes so that both outcomes are common.
    /// </summary>
    [Fact]
    public void Byte_validation_agrees_with_a_strict_decoder()
    {
        var strict = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);
        byte[][] pieces = [[0x61], [0xC3, 0xA9], [0xE2, 0x82, 0xAC], [0xF0, 0x9F, 0x98, 0x80], [0xEF, 0xBB, 0xBF], [0x00], [0xED, 0xA0, 0x80], [0xC0, 0x80]];
        var valid = 0;
        for (var seed = 0; seed < 5000; seed++)
        {
            var rng = new Random(seed);
            var bytes = new List<byte>();
            var count = rng.Next(0, 8);
            for (var i = 0; i < count; i++)
            {
                if (rng.Next(6) == 0)
                {
                    bytes.Add((byte)rng.Next(256));
                }
                else
                {
                    bytes.AddRange(pieces[rng.Next(pieces.Length)]);
                }
            }

            var array = bytes.ToArray();
            bool expected;
            try
            {
                var text = strict.GetString(array);
                expected = !text.Contains('\0', StringComparison.Ordinal);
                if (expected)
                {
                    Assert.True(Utf8Validation.IsValidMqttString(text.AsSpan()), $"seed {seed}");
                    Assert.Equal(array, strict.GetBytes(text));
                }
            }
            catch (DecoderFallbackException)
            {
                expected = false;
            }

            Assert.True(expected == Utf8Validation.IsValidMqttString(array), $"seed {seed}: {Hex.Format(array)}");
            valid += expected ? 1 : 0;
        }

        Assert.InRange(valid, 500, 4500);
    }
}
