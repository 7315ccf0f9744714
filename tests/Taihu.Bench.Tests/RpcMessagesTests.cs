using System.Buffers;
using System.Text;
using Taihu.Bench.Scenarios;

namespace Taihu.Bench.Tests;

public class RpcMessagesTests
{
    private static ReadOnlySequence<byte> Bytes(string text) => new(Encoding.UTF8.GetBytes(text));

    [Theory]
    [InlineData("v1/devices/me/rpc/request/1", 1)]
    [InlineData("v1/devices/me/rpc/request/42", 42)]
    [InlineData("v1/devices/me/rpc/request/2147483647", int.MaxValue)]
    public void Reads_the_request_id_of_a_command_topic(string topic, int expected)
    {
        Assert.True(RpcMessages.TryParseRequestId(Encoding.UTF8.GetBytes(topic), out var id));
        Assert.Equal(expected, id);
    }

    [Theory]
    [InlineData("v1/devices/me/rpc/request/")]
    [InlineData("v1/devices/me/rpc/request/0")]
    [InlineData("v1/devices/me/rpc/request/-1")]
    [InlineData("v1/devices/me/rpc/request/+1")]
    [InlineData("v1/devices/me/rpc/request/1a")]
    [InlineData("v1/devices/me/rpc/request/1/2")]
    [InlineData("v1/devices/me/rpc/request/2147483648")]
    [InlineData("v1/devices/me/rpc/request/99999999999")]
    [InlineData("v1/devices/me/rpc/response/1")]
    [InlineData("v1/devices/me/attributes")]
    [InlineData("")]
    public void Refuses_anything_else(string topic)
    {
        Assert.False(RpcMessages.TryParseRequestId(Encoding.UTF8.GetBytes(topic), out _));
    }

    [Fact]
    public void The_reply_goes_to_the_response_topic_of_the_same_id()
    {
        Assert.Equal("v1/devices/me/rpc/response/1234", Encoding.UTF8.GetString(RpcMessages.ResponseTopic(1234)));
        Assert.Equal("{\"seq\":7}", Encoding.UTF8.GetString(RpcMessages.Reply(7)));
    }

    [Theory]
    [InlineData("{\"method\":\"setValue\",\"params\":{\"seq\":3}}", 3)]
    [InlineData("{\"params\":{\"other\":{\"seq\":9},\"seq\":12},\"method\":\"x\"}", 12)]
    [InlineData("{\"method\":{\"params\":{\"seq\":1}},\"params\":{\"seq\":0}}", 0)]
    public void Reads_params_seq(string payload, long expected)
    {
        Assert.True(RpcMessages.TryReadSequence(Bytes(payload), out var sequence));
        Assert.Equal(expected, sequence);
    }

    [Fact]
    public void Reads_params_seq_across_segments()
    {
        var first = new Segment(Encoding.UTF8.GetBytes("{\"method\":\"a\",\"par"));
        var last = first.Append(Encoding.UTF8.GetBytes("ams\":{\"seq\":5}}"));
        Assert.True(RpcMessages.TryReadSequence(new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length), out var sequence));
        Assert.Equal(5, sequence);
    }

    [Theory]
    [InlineData("")]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("{}")]
    [InlineData("{\"params\":{}}")]
    [InlineData("{\"params\":[1]}")]
    [InlineData("{\"params\":{\"seq\":\"3\"}}")]
    [InlineData("{\"params\":{\"seq\":1.5}}")]
    [InlineData("{\"params\":{\"seq\":99999999999999999999}}")]
    [InlineData("{\"params\":{\"seq\":")]
    [InlineData("{\"params\":{\"other\":{\"seq\":1}}}")]
    [InlineData("{\"params\":{\"seq\":3}")]
    public void Refuses_a_payload_without_an_integer_seq(string payload)
    {
        Assert.False(RpcMessages.TryReadSequence(Bytes(payload), out _));
    }

    [Fact]
    public void Refuses_nesting_beyond_its_depth_limit()
    {
        var deep = "{\"params\":" + new string('[', 100) + new string(']', 100) + "}";
        Assert.False(RpcMessages.TryReadSequence(Bytes(deep), out _));
    }

    private sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(byte[] bytes) => Memory = bytes;

        public Segment Append(byte[] bytes)
        {
            var next = new Segment(bytes) { RunningIndex = RunningIndex + Memory.Length };
            Next = next;
            return next;
        }
    }
}

public class DeliveryOrderTests
{
    [Fact]
    public void Calls_in_order_complete_a_device()
    {
        var order = new DeliveryOrder(devices: 2, perDevice: 3);
        for (var k = 0; k < 3; k++)
        {
            order.Record(0, k);
        }

        order.Record(1, 0);
        Assert.Equal(4, order.Received);
        Assert.Equal(4, order.InOrder);
        Assert.Equal(1, order.CompleteDevices);
        Assert.Equal(0, order.OutOfOrder + order.Duplicates + order.Unexpected);
    }

    [Fact]
    public void A_gap_is_out_of_order_and_the_late_call_a_repeat_not_a_success()
    {
        var order = new DeliveryOrder(devices: 1, perDevice: 3);
        order.Record(0, 0);
        order.Record(0, 2); // 1 skipped
        order.Record(0, 1); // late
        Assert.Equal(1, order.OutOfOrder);
        Assert.Equal(1, order.Duplicates);
        Assert.Equal(0, order.CompleteDevices);
        Assert.Equal(3, order.Received);
    }

    [Fact]
    public void A_redelivery_counts_once_as_a_duplicate()
    {
        var order = new DeliveryOrder(devices: 1, perDevice: 2);
        order.Record(0, 0);
        order.Record(0, 0);
        order.Record(0, 1);
        Assert.Equal(1, order.Duplicates);
        Assert.Equal(2, order.InOrder);
        Assert.Equal(1, order.CompleteDevices);
    }

    [Theory]
    [InlineData(0, -1)]
    [InlineData(0, 2)]
    [InlineData(1, 0)]
    [InlineData(-1, 0)]
    public void Commands_that_are_not_the_runs_calls_are_unexpected(int device, long sequence)
    {
        var order = new DeliveryOrder(devices: 1, perDevice: 2);
        order.Record(device, sequence);
        Assert.Equal(1, order.Unexpected);
        Assert.Equal(0, order.InOrder);
    }
}
