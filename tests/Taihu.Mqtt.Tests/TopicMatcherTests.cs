using Taihu.Mqtt.Topics;

namespace Taihu.Mqtt.Tests;

public class TopicMatcherTests
{
    [Theory]
    [InlineData("a/b", "a/b", true)]
    [InlineData("a/+", "a/b", true)]
    [InlineData("a/+", "a/b/c", false)]
    [InlineData("a/#", "a", true)]
    [InlineData("a/#", "a/b/c", true)]
    [InlineData("#", "a/b", true)]
    [InlineData("+/+", "/b", true)]
    [InlineData("+", "/b", false)]
    [InlineData("#", "$SYS/broker", false)]
    [InlineData("+/broker", "$SYS/broker", false)]
    [InlineData("$SYS/#", "$SYS/broker/uptime", true)]
    [InlineData("a/b", "a/c", false)]
    [InlineData("a//c", "a//c", true)]
    [InlineData("a/+/c", "a//c", true)]
    public void Matches_follows_the_spec(string filter, string topic, bool expected)
    {
        Assert.Equal(expected, TopicMatcher.Matches(filter, topic));
    }

    [Theory]
    [InlineData("a/b", true)]
    [InlineData("#", true)]
    [InlineData("a/#", true)]
    [InlineData("a/#/b", false)]
    [InlineData("a#", false)]
    [InlineData("a/b+", false)]
    [InlineData("+/+/#", true)]
    [InlineData("", false)]
    public void Filters_are_validated(string filter, bool expected)
    {
        Assert.Equal(expected, TopicValidator.IsValidTopicFilter(filter));
    }
}
