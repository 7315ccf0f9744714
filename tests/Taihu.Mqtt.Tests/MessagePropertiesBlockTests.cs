using Taihu.Mqtt.Packets;

namespace Taihu.Mqtt.Tests;

/// <summary>
/// <see cref="PropertyCodec.EncodeMessageProperties"/> and <see cref="PropertyCodec.DecodeMessageProperties"/>: the
/// block a state store keeps for a message's properties reads back as the properties a subscriber gets.
/// </summary>
public class MessagePropertiesBlockTests
{
    [Fact]
    public void Application_message_properties_round_trip()
    {
        var properties = new MqttProperties
        {
            PayloadFormatIndicator = 1,
            MessageExpiryInterval = 3600,
            ContentType = "application/json",
            ResponseTopic = "reply/to/me",
            CorrelationData = new byte[] { 1, 2, 3 },
            UserProperties = [new("a", "1"), new("a", "2"), new("b", "")],
        };

        var decoded = PropertyCodec.DecodeMessageProperties(PropertyCodec.EncodeMessageProperties(properties));

        Assert.NotNull(decoded);
        Assert.Equal((properties.PayloadFormatIndicator, properties.MessageExpiryInterval, properties.ContentType, properties.ResponseTopic),
            (decoded.PayloadFormatIndicator, decoded.MessageExpiryInterval, decoded.ContentType, decoded.ResponseTopic));
        Assert.Equal([1, 2, 3], decoded.CorrelationData!.Value.ToArray());
        Assert.Equal(properties.UserProperties, decoded.UserProperties!);
    }

    [Fact]
    public void Properties_that_do_not_travel_with_the_message_are_left_out()
    {
        // A will keeps its Will Delay Interval, a publish its Topic Alias: neither belongs to the stored message.
        Assert.Null(PropertyCodec.EncodeMessageProperties(new MqttProperties { WillDelayInterval = 30, TopicAlias = 4 }));
        var decoded = PropertyCodec.DecodeMessageProperties(PropertyCodec.EncodeMessageProperties(new MqttProperties { WillDelayInterval = 30, MessageExpiryInterval = 5 }));
        Assert.Equal((5u, (uint?)null), (decoded!.MessageExpiryInterval, decoded.WillDelayInterval));
    }

    [Fact]
    public void No_properties_is_no_block()
    {
        Assert.Null(PropertyCodec.EncodeMessageProperties(null));
        Assert.Null(PropertyCodec.EncodeMessageProperties(new MqttProperties()));
        Assert.Null(PropertyCodec.DecodeMessageProperties([]));
    }

    [Theory]
    [InlineData(new byte[] { 0x05, 0x02, 0x00, 0x00 })] // length runs past the end
    [InlineData(new byte[] { 0x02, 0x11, 0x00 })] // Session Expiry Interval is not a PUBLISH property
    [InlineData(new byte[] { 0x02, 0x01, 0x01, 0xFF })] // bytes after the block
    public void Damaged_block_is_refused(byte[] block)
    {
        Assert.Throws<MqttProtocolException>(() => PropertyCodec.DecodeMessageProperties(block));
    }
}
