using Taihu.Mqtt.Topics;

namespace Taihu.Mqtt.Tests;

/// <summary>Topic names, filters and shared subscriptions (MQTT 5.0 sections 4.7 and 4.8.2).</summary>
public class TopicValidatorTests
{
    [Theory]
    [InlineData("a", true)]
    [InlineData("a/b/c", true)]
    [InlineData("/", true)]
    [InlineData("a//b", true)]
    [InlineData(" ", true)]
    [InlineData("$SYS/broker", true)]
    [InlineData("温度/客厅", true)]
    [InlineData("", false)]
    [InlineData("+", false)]
    [InlineData("#", false)]
    [InlineData("a/+/b", false)]
    [InlineData("a/#", false)]
    [InlineData("a+b", false)]
    [InlineData("a\0b", false)]
    public void Topic_names_have_no_wildcards_and_no_NUL(string topic, bool expected)
    {
        Assert.Equal(expected, TopicValidator.IsValidTopicName(topic));
    }

    [Theory]
    [InlineData("+", true)]
    [InlineData("+/a", true)]
    [InlineData("a/+/b", true)]
    [InlineData("/#", true)]
    [InlineData("a//+", true)]
    [InlineData("/", true)]
    [InlineData("$SYS/#", true)]
    [InlineData("+a", false)]
    [InlineData("a/#/", false)]
    [InlineData("##", false)]
    [InlineData("++", false)]
    [InlineData("a/b#", false)]
    [InlineData("a\0", false)]
    public void Filters_put_wildcards_on_whole_levels(string filter, bool expected)
    {
        Assert.Equal(expected, TopicValidator.IsValidTopicFilter(filter));
    }

    [Theory]
    [InlineData("a/b", false)]
    [InlineData("a/+", true)]
    [InlineData("#", true)]
    [InlineData("$share/g/a", false)]
    public void HasWildcards_looks_for_plus_and_hash(string filter, bool expected)
    {
        Assert.Equal(expected, TopicValidator.HasWildcards(filter));
    }

    [Theory]
    [InlineData("$share/g/a/b", "g", "a/b")]
    [InlineData("$share/g/#", "g", "#")]
    [InlineData("$share/g/+/temp", "g", "+/temp")]
    [InlineData("$share/group-1/a", "group-1", "a")]
    [InlineData("$share/组/a", "组", "a")]
    [InlineData("$share/g//", "g", "/")]
    [InlineData("$share/g/$SYS/x", "g", "$SYS/x")]
    public void Valid_shared_filters_are_split_into_group_and_filter(string value, string group, string filter)
    {
        Assert.True(TopicValidator.TryParseShared(value, out var actualGroup, out var actualFilter, out var valid));
        Assert.True(valid);
        Assert.Equal(group, actualGroup);
        Assert.Equal(filter, actualFilter);
    }

    [Theory]
    [InlineData("$share/g")]
    [InlineData("$share/")]
    [InlineData("$share//a")]
    [InlineData("$share/g+/a")]
    [InlineData("$share/+/a")]
    [InlineData("$share/g#/a")]
    [InlineData("$share/#/a")]
    [InlineData("$share/g/")]
    [InlineData("$share/g/a#")]
    [InlineData("$share/g/a/#/b")]
    [InlineData("$share/g/a\0")]
    public void Broken_shared_filters_are_recognised_but_invalid(string value)
    {
        Assert.True(TopicValidator.TryParseShared(value, out var group, out var filter, out var valid));
        Assert.False(valid);
        Assert.Equal("", group);
        Assert.Equal("", filter);
    }

    [Theory]
    [InlineData("a/b")]
    [InlineData("$share")]
    [InlineData("$shared/g/a")]
    [InlineData("$SHARE/g/a")]
    [InlineData("share/g/a")]
    [InlineData("/$share/g/a")]
    public void Other_filters_are_not_shared(string value)
    {
        Assert.False(TopicValidator.TryParseShared(value, out _, out _, out var valid));
        Assert.False(valid);
    }
}
