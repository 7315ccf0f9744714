using Taihu.Broker.Routing;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>The retained store's byte accounting: per-message size, per-namespace total, replacement, deletion and expiry.</summary>
public class RetainedByteLimitTests
{
    private static readonly DateTimeOffset Now = DateTimeOffset.FromUnixTimeSeconds(1_700_000_000);

    private static BrokerMessage Message(string topic, int size, uint? expiry = null) =>
        BrokerMessage.Create("", topic, new byte[size], owner: null, QoS.AtMostOnce, retain: true,
            expiry is null ? null : new MqttProperties { MessageExpiryInterval = expiry }, Now, originClientId: null);

    private static bool Set(RetainedStore store, BrokerMessage message, long maximumSize = 1000, long maximumBytes = 3000)
    {
        var stored = store.Set(message, maximumCount: 100, maximumSize, maximumBytes);
        message.Release();
        return stored;
    }

    [Fact]
    public void Counts_topic_payload_and_properties()
    {
        Assert.Equal(3 + 10, RetainedStore.SizeOf("a/b", 10, null));
        Assert.Equal(3 + 10 + 5, RetainedStore.SizeOf("a/b", 10, new MqttProperties { MessageExpiryInterval = 1 }));
        Assert.Equal(4 + 10, RetainedStore.SizeOf("a/é", 10, null));
    }

    [Fact]
    public void Message_over_the_size_limit_is_not_stored()
    {
        var store = new RetainedStore();
        Assert.False(Set(store, Message("t", 1000)));
        Assert.True(Set(store, Message("t", 999)));
        Assert.Equal(1000, store.Bytes);
    }

    [Fact]
    public void Namespace_total_caps_new_topics_and_growing_replacements_but_not_shrinking_ones_or_deletions()
    {
        var store = new RetainedStore();
        Assert.True(Set(store, Message("a", 999)));
        Assert.True(Set(store, Message("b", 999)));
        Assert.True(Set(store, Message("c", 999)));
        Assert.Equal(3000, store.Bytes);
        Assert.False(store.HasRoomFor("d", 2, 3000));
        Assert.False(Set(store, Message("d", 1)));
        Assert.True(store.HasRoomFor("a", 1000, 3000));
        Assert.True(Set(store, Message("a", 500)));
        Assert.Equal(2501, store.Bytes);
        Assert.False(Set(store, Message("a", 999 + 500)));
        Assert.True(Set(store, Message("d", 400)));
        Assert.Equal(2902, store.Bytes);
        Assert.True(Set(store, Message("b", 0)));
        Assert.Equal(1902, store.Bytes);
        Assert.Equal(3, store.Count);
    }

    [Fact]
    public void Expired_messages_give_their_bytes_back()
    {
        var store = new RetainedStore();
        Assert.True(Set(store, Message("e", 100, expiry: 10)));
        Assert.Equal(1, store.RemoveExpired(Now.AddSeconds(11)));
        Assert.Equal(0, store.Bytes);
    }

    [Fact]
    public void Options_are_validated()
    {
        Assert.Empty(new BrokerOptions().Validate());
        Assert.Contains(new BrokerOptions { MaximumRetainedMessageSize = 0 }.Validate(), e => e.Contains("MaximumRetainedMessageSize", StringComparison.Ordinal));
        Assert.Contains(new BrokerOptions { MaximumRetainedBytesPerNamespace = 1000, MaximumRetainedMessageSize = 2000 }.Validate(), e => e.Contains("MaximumRetainedBytesPerNamespace", StringComparison.Ordinal));
    }
}
