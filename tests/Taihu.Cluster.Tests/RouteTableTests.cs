using Taihu.Cluster.Mqtt;
using Taihu.Mqtt.Topics;

namespace Taihu.Cluster.Tests;

/// <summary>The other nodes' routes: which nodes a topic goes to, by MQTT's matching rules, per namespace.</summary>
public sealed class RouteTableTests
{
    [Theory]
    [InlineData("a/b/c", "a/b/c", true)]
    [InlineData("a/+/c", "a/b/c", true)]
    [InlineData("a/+/c", "a/b/d", false)]
    [InlineData("a/#", "a", true)]
    [InlineData("a/#", "a/b/c", true)]
    [InlineData("#", "a/b", true)]
    [InlineData("+", "a/b", false)]
    [InlineData("+/+", "/b", true)]
    [InlineData("a/+", "a/", true)]
    [InlineData("#", "$SYS/broker", false)]
    [InlineData("+/broker", "$SYS/broker", false)]
    [InlineData("$SYS/#", "$SYS/broker", true)]
    [InlineData("a/b", "a/b/c", false)]
    [InlineData("a/b/c", "a/b", false)]
    public void Match_FollowsTheFilterRules(string filter, string topic, bool matches)
    {
        using var table = new RouteTable<string>();
        table.Add("n1", "", filter);
        var nodes = new List<string>();
        table.Match("", topic, nodes);
        Assert.Equal(matches ? ["n1"] : [], nodes);

        // The broker's own matcher says the same.
        Assert.Equal(matches, TopicMatcher.Matches(filter, topic));
    }

    [Fact]
    public void ANodeWithSeveralMatchingFilters_IsNamedOnce_AndNamespacesAreApart()
    {
        using var table = new RouteTable<string>();
        table.Add("n1", "t1", "a/#");
        table.Add("n1", "t1", "a/+");
        table.Add("n2", "t1", "a/b");
        table.Add("n3", "t2", "a/b");
        Assert.False(table.Add("n2", "t1", "a/b"));
        var nodes = new List<string>();
        table.Match("t1", "a/b", nodes);
        Assert.Equal(["n1", "n2"], nodes.Order());
        nodes.Clear();
        table.Match("t3", "a/b", nodes);
        Assert.Empty(nodes);
        Assert.Equal(4, table.Count);
    }

    [Fact]
    public void Remove_AndRemoveNode_ForgetRoutes_AndLeaveOthers()
    {
        using var table = new RouteTable<string>();
        table.Add("n1", "", "a/+/c");
        table.Add("n1", "", "x/#");
        table.Add("n2", "", "a/+/c");
        Assert.True(table.Remove("n2", "", "a/+/c"));
        Assert.False(table.Remove("n2", "", "a/+/c"));
        Assert.False(table.Remove("n1", "", "never/seen"));
        var nodes = new List<string>();
        table.Match("", "a/b/c", nodes);
        Assert.Equal(["n1"], nodes);

        Assert.Equal(2, table.RemoveNode("n1"));
        Assert.Equal(0, table.Count);
        nodes.Clear();
        table.Match("", "a/b/c", nodes);
        table.Match("", "x/y", nodes);
        Assert.Empty(nodes);

        // The table is usable again after being emptied.
        table.Add("n3", "", "a/+/c");
        table.Match("", "a/q/c", nodes);
        Assert.Equal(["n3"], nodes);
    }
}
