using System.Buffers;
using System.Text;
using Taihu.Mqtt.Packets;
using Taihu.Mqtt.Topics;

namespace Taihu.Mqtt.Tests;

public class TopicNameCacheTests
{
    [Theory]
    [InlineData("sensors/1/temp")]
    [InlineData("温度/客厅")]
    [InlineData("devices/😀/state")]
    [InlineData("\uFEFFbom")]
    public void Repeated_topic_returns_the_same_instance(string topic)
    {
        var cache = new TopicNameCache();
        var first = cache.GetOrAdd(Encoding.UTF8.GetBytes(topic));
        Assert.Equal(0, cache.Count); // kept from its second sighting
        var second = cache.GetOrAdd(Encoding.UTF8.GetBytes(topic));
        var third = cache.GetOrAdd(Encoding.UTF8.GetBytes(topic));
        Assert.Equal(topic, first);
        Assert.Equal(topic, second);
        Assert.Same(second, third);
        Assert.Equal(1, cache.Count);
    }

    [Fact]
    public void Topics_used_once_are_never_kept()
    {
        // An RPC reply's topic names its call: a new one each time, which a long-lived connection must not hoard.
        var cache = new TopicNameCache();
        for (var i = 0; i < 1000; i++)
        {
            var topic = $"v1/devices/me/rpc/response/{i}";
            Assert.Equal(topic, cache.GetOrAdd(Encoding.UTF8.GetBytes(topic)));
        }

        Assert.Equal(0, cache.Count);
    }

    [Fact]
    public void Topics_used_in_turn_are_kept()
    {
        var cache = new TopicNameCache();
        for (var round = 0; round < 3; round++)
        {
            foreach (var topic in new[] { "v1/devices/me/telemetry", "v1/devices/me/attributes", "v1/devices/me/rpc/response/" + round })
            {
                Assert.Equal(topic, cache.GetOrAdd(Encoding.UTF8.GetBytes(topic)));
            }
        }

        Assert.Equal(2, cache.Count);
        Assert.Same(cache.GetOrAdd("v1/devices/me/telemetry"u8), cache.GetOrAdd("v1/devices/me/telemetry"u8));
    }

    [Fact]
    public void Different_topics_are_kept_apart()
    {
        var cache = new TopicNameCache();
        cache.GetOrAdd("a/b"u8);
        cache.GetOrAdd("a/c"u8);
        var a = cache.GetOrAdd("a/b"u8);
        var b = cache.GetOrAdd("a/c"u8);
        Assert.Equal("a/b", a);
        Assert.Equal("a/c", b);
        Assert.Same(a, cache.GetOrAdd("a/b"u8));
        Assert.Same(b, cache.GetOrAdd("a/c"u8));
        Assert.Equal(2, cache.Count);
    }

    [Fact]
    public void The_cache_never_grows_past_its_capacity()
    {
        var cache = new TopicNameCache(capacity: 4);
        for (var i = 0; i < 100; i++)
        {
            var topic = $"t/{i}";
            Assert.Equal(topic, cache.GetOrAdd(Encoding.UTF8.GetBytes(topic)));
            Assert.Equal(topic, cache.GetOrAdd(Encoding.UTF8.GetBytes(topic)));
            Assert.InRange(cache.Count, 1, 4);
        }
    }

    [Fact]
    public void A_full_cache_starts_over_and_still_returns_correct_strings()
    {
        var cache = new TopicNameCache(capacity: 2);
        cache.GetOrAdd("one"u8);
        var first = cache.GetOrAdd("one"u8);
        cache.GetOrAdd("two"u8);
        cache.GetOrAdd("two"u8);
        cache.GetOrAdd("three"u8);
        cache.GetOrAdd("three"u8);
        Assert.Equal(1, cache.Count);

        var again = cache.GetOrAdd("one"u8);
        Assert.Equal("one", again);
        Assert.NotSame(first, again);
    }

    [Fact]
    public void Long_topics_are_decoded_but_not_cached()
    {
        var cache = new TopicNameCache();
        // 85 three-byte characters and one ASCII byte: exactly the 256-byte limit, cached.
        var atLimit = string.Concat(Enumerable.Repeat("中", 85)) + "a";
        Assert.Equal(256, Encoding.UTF8.GetByteCount(atLimit));
        cache.GetOrAdd(Encoding.UTF8.GetBytes(atLimit));
        Assert.Same(cache.GetOrAdd(Encoding.UTF8.GetBytes(atLimit)), cache.GetOrAdd(Encoding.UTF8.GetBytes(atLimit)));
        Assert.Equal(1, cache.Count);

        var over = atLimit + "b";
        var first = cache.GetOrAdd(Encoding.UTF8.GetBytes(over));
        var second = cache.GetOrAdd(Encoding.UTF8.GetBytes(over));
        Assert.Equal(over, first);
        Assert.Equal(over, second);
        Assert.NotSame(first, second);
        Assert.Equal(1, cache.Count);
    }

    [Fact]
    public void The_reader_shares_topic_strings_through_its_cache()
    {
        var frame = PacketWriter.ToArray(new PublishPacket { Topic = "home/kitchen/temp", Payload = new byte[] { 21 } }, ProtocolVersion.V311);
        var bytes = frame.Concat(frame).Concat(frame).ToArray();

        var cached = ReadTopics(new PacketReader { Version = ProtocolVersion.V311, TopicCache = new TopicNameCache() }, bytes);
        Assert.Equal("home/kitchen/temp", cached[0]);
        Assert.Same(cached[1], cached[2]);

        var uncached = ReadTopics(new PacketReader { Version = ProtocolVersion.V311 }, bytes);
        Assert.Equal(cached[0], uncached[1]);
        Assert.NotSame(uncached[0], uncached[1]);
    }

    private static string[] ReadTopics(PacketReader reader, byte[] bytes)
    {
        var buffer = new ReadOnlySequence<byte>(bytes);
        var topics = new List<string>();
        while (reader.TryRead(ref buffer, out var packet))
        {
            var publish = (PublishPacket)packet;
            topics.Add(publish.Topic);
            publish.PayloadOwner?.Release();
        }

        return [.. topics];
    }
}
