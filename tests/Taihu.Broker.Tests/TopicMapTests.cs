using System.Runtime.CompilerServices;
using Taihu.Broker.Extensibility;

namespace Taihu.Broker.Tests;

/// <summary>
/// The per-connection topic map of a device (<c>v1/devices/me/</c> to <c>$devices/{id}/</c>): right in both
/// directions whatever the order of topics, the same mapped instance for a topic that repeats, and nothing kept
/// of a topic seen once (an RPC request id is a new topic per call).
/// </summary>
public class TopicMapTests
{
    private static TopicMap DeviceMap() => new(("v1/devices/me/", "$devices/42/"));

    [Fact]
    public void Topics_MapBothWays_InAnyOrder_AndOthersAreLeftAlone()
    {
        var map = DeviceMap();
        string telemetry = "v1/devices/me/telemetry", attributes = "v1/devices/me/attributes";
        string[] sequence = [telemetry, telemetry, attributes, telemetry, "v1/devices/me/rpc/response/1", telemetry, telemetry, attributes, attributes, "other/topic", telemetry];
        foreach (var topic in sequence)
        {
            var expected = topic.StartsWith("v1/devices/me/", StringComparison.Ordinal) ? "$devices/42/" + topic["v1/devices/me/".Length..] : topic;
            Assert.Equal(expected, map.ToBroker(topic));
            Assert.Equal(topic, map.ToClient(expected));
        }

        Assert.Equal("$share/g/$devices/42/rpc/request/+", map.FilterToBroker("$share/g/v1/devices/me/rpc/request/+"));
        Assert.Equal("$share/g/other/+", map.FilterToBroker("$share/g/other/+"));
    }

    [Fact]
    public void ARepeatedTopic_GetsTheSameMappedInstance_FromItsSecondSightingInARow()
    {
        var map = DeviceMap();
        const string telemetry = "v1/devices/me/telemetry";

        var first = map.ToBroker(telemetry);
        var second = map.ToBroker(telemetry);
        var third = map.ToBroker(telemetry);
        map.ToBroker("v1/devices/me/rpc/response/7");
        var afterAnRpcReply = map.ToBroker(telemetry);

        Assert.NotSame(first, second);
        Assert.Same(second, third);
        Assert.Same(second, afterAnRpcReply);
    }

    [Fact]
    public void ATopicSeenOnce_IsNotKeptAliveByTheMap()
    {
        var map = DeviceMap();
        var (inbound, outbound) = MapOnce(map);

        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();

        Assert.False(inbound.IsAlive, "the map kept a topic it saw once, inbound");
        Assert.False(outbound.IsAlive, "the map kept a topic it saw once, outbound");
        GC.KeepAlive(map);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static (WeakReference Inbound, WeakReference Outbound) MapOnce(TopicMap map)
    {
        var request = string.Concat("v1/devices/me/rpc/response/", Random.Shared.Next(1, 1000).ToString());
        var mappedIn = map.ToBroker(request);
        var command = string.Concat("$devices/42/rpc/request/", Random.Shared.Next(1, 1000).ToString());
        var mappedOut = map.ToClient(command);
        return (new WeakReference(mappedIn), new WeakReference(mappedOut));
    }
}
