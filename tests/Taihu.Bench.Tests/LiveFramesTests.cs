using System.Text;
using Taihu.Bench.Scenarios;

namespace Taihu.Bench.Tests;

public class LiveFramesTests
{
    private static bool Read(string frame, List<long> values, out int subscriptionId, out int errorCode) =>
        LiveFrames.TryRead(Encoding.UTF8.GetBytes(frame), "k0"u8, values, out subscriptionId, out errorCode);

    [Fact]
    public void Reads_the_integer_values_of_the_key_oldest_first()
    {
        var values = new List<long>();
        Assert.True(Read("""{"subscriptionId":1,"errorCode":0,"errorMsg":null,"data":{"k1":[[1,"2.5"]],"k0":[[1796278603875,"36"],[1796278603876,"37"]],"k2":[]},"latestValues":{"k0":1796278603876}}""",
            values, out var id, out var error));
        Assert.Equal([36L, 37L], values);
        Assert.Equal(1, id);
        Assert.Equal(0, error);
    }

    [Fact]
    public void A_snapshot_without_the_key_or_with_other_values_adds_nothing()
    {
        var values = new List<long>();
        Assert.True(Read("""{"subscriptionId":1,"errorCode":0,"errorMsg":null,"data":{},"latestValues":{}}""", values, out _, out _));
        Assert.True(Read("""{"subscriptionId":1,"data":{"k0":[[1,"true"],[2,"1.5"],[3,"x"]]}}""", values, out _, out _));
        Assert.Empty(values);
    }

    [Fact]
    public void Reports_the_error_code_of_a_refusal()
    {
        var values = new List<long>();
        Assert.True(Read("""{"subscriptionId":6,"errorCode":3,"errorMsg":"Device .. was not found, or this user may not read it.","data":{},"latestValues":{}}""",
            values, out var id, out var error));
        Assert.Equal(6, id);
        Assert.Equal(3, error);
    }

    [Theory]
    [InlineData("")]
    [InlineData("not json")]
    [InlineData("[]")]
    [InlineData("{\"data\":[]}")]
    [InlineData("{\"data\":{\"k0\":{}}}")]
    [InlineData("{\"data\":{\"k0\":[1,2]}}")]
    [InlineData("{\"data\":{\"k0\":[[\"ts\",\"1\"]]}}")]
    [InlineData("{\"data\":{\"k0\":[[1]]}}")]
    [InlineData("{\"data\":{\"k0\":[[1,\"2\",3]]}}")]
    [InlineData("{\"subscriptionId\":\"1\"}")]
    [InlineData("{\"errorCode\":1.5}")]
    [InlineData("{\"subscriptionId\":99999999999}")]
    [InlineData("{\"data\":{\"k0\":[[1,\"2\"]]}")]
    [InlineData("{\"data\":{\"k0\":[[1,\"2\"]")]
    public void Refuses_a_malformed_frame_and_keeps_none_of_its_values(string frame)
    {
        var values = new List<long> { 99 };
        Assert.False(Read(frame, values, out _, out _));
        Assert.Equal([99L], values);
    }

    [Fact]
    public void Refuses_nesting_beyond_its_depth_limit()
    {
        var values = new List<long>();
        Assert.False(Read("{\"x\":" + new string('[', 100) + new string(']', 100) + "}", values, out _, out _));
    }
}
