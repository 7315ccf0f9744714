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

    [Theory]
    [InlineData(1)]
    [InlineData(4)]
    [InlineData(5)]
    [InlineData(40)]
    public void ALevelWithFewOrManyChildren_MatchesEach_AndForgetsThemOneByOne(int children)
    {
        // A level keeps up to four literal children in a small array and more in a dictionary: both, and the move
        // from one to the other, match the same.
        using var table = new RouteTable<string>();
        for (var i = 0; i < children; i++)
        {
            Assert.True(table.Add("n" + (i % 3), "", $"d/{i}/rpc/request/+"));
            Assert.True(table.Add("n" + (i % 3), "", $"d/{i}/attributes"));
        }

        Assert.True(table.Add("n9", "", "d/+/attributes"));
        var nodes = new List<string>();
        for (var i = 0; i < children; i++)
        {
            nodes.Clear();
            table.Match("", $"d/{i}/rpc/request/7", nodes);
            Assert.Equal(["n" + (i % 3)], nodes);
            nodes.Clear();
            table.Match("", $"d/{i}/attributes", nodes);
            Assert.Equal(["n" + (i % 3), "n9"], nodes.Order());
        }

        nodes.Clear();
        table.Match("", $"d/{children}/rpc/request/7", nodes);
        Assert.Empty(nodes);

        // Removed from the middle, each goes and the others stay.
        for (var i = children / 2; i < children + (children / 2); i++)
        {
            var d = i % children;
            Assert.True(table.Remove("n" + (d % 3), "", $"d/{d}/rpc/request/+"));
            Assert.False(table.Remove("n" + (d % 3), "", $"d/{d}/rpc/request/+"));
            nodes.Clear();
            table.Match("", $"d/{d}/rpc/request/7", nodes);
            Assert.Empty(nodes);
            Assert.True(table.Remove("n" + (d % 3), "", $"d/{d}/attributes"));
        }

        Assert.Equal(1, table.Count);
        nodes.Clear();
        table.Match("", "d/0/attributes", nodes);
        Assert.Equal(["n9"], nodes);
        Assert.True(table.Remove("n9", "", "d/+/attributes"));
        Assert.Equal(0, table.Count);

        // And the emptied table takes routes again.
        Assert.True(table.Add("n1", "", "d/0/attributes"));
        nodes.Clear();
        table.Match("", "d/0/attributes", nodes);
        Assert.Equal(["n1"], nodes);
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

    [Fact]
    public void SharedGroup_NamesOneNodeInTurn_ApartFromPlainRoutes_AndIsForgottenWithItsNodes()
    {
        using var table = new RouteTable<string>();
        table.Add("n1", "", "job/#", "workers");
        table.Add("n2", "", "job/+", "workers");
        table.Add("n2", "", "job/#", "workers");
        table.Add("n3", "", "job/#");
        Assert.False(table.Add("n1", "", "job/#", "workers"));
        Assert.Equal(4, table.Count);

        // Plain routes name n3 only; the group on job/# names n1 and n2 in turn, the group on job/+ n2 each time.
        var chosen = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            var nodes = new List<string>();
            var picks = new List<SharedPick<string>>();
            table.Match("", "job/7", nodes, picks);
            Assert.Equal(["n3"], nodes);
            Assert.Equal(2, picks.Count);
            Assert.All(picks, p => Assert.Equal("workers", p.Group));
            Assert.Equal("n2", picks.Single(p => p.Filter == "job/+").Node);
            chosen.Add(picks.Single(p => p.Filter == "job/#").Node);
        }

        Assert.Equal(2, chosen.Count(n => n == "n1"));
        Assert.Equal(2, chosen.Count(n => n == "n2"));
        Assert.NotEqual(chosen[0], chosen[1]);

        // A plain route and a group on the same filter are apart: removing one leaves the other.
        Assert.False(table.Remove("n1", "", "job/#"));
        Assert.True(table.Remove("n2", "", "job/+", "workers"));
        Assert.Equal(2, table.RemoveNode("n2") + table.RemoveNode("n3"));
        var left = new List<SharedPick<string>>();
        table.Match("", "job/7", [], left);
        Assert.Equal([new SharedPick<string>("workers", "job/#", "n1")], left);
        Assert.True(table.Remove("n1", "", "job/#", "workers"));
        Assert.Equal(0, table.Count);
    }
}
