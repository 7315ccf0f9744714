using Taihu.Platform.BrokerUsers;

namespace Taihu.Platform.Tests;

/// <summary>Mosquitto ACL files: parsing, hostile lines, and what the compiled rules allow.</summary>
public sealed class MosquittoAclFileTests
{
    private const string CityAcl = """
        # anonymous clients
        topic read public/#

        user city-app
        topic write city/+/air
        topic read city/#

        user contractor
        topic read city/#
        topic write city/+/air
        topic deny city/secret/#

        user dash
        topic readwrite dash/#

        pattern readwrite users/%u/#
        pattern write clients/%c/status
        """;

    private static MosquittoAclFile City => MosquittoAclFile.Parse("acl", CityAcl);

    [Fact]
    public void UserRules_WriteAndRead()
    {
        var access = City.Compile("city-app", "c1");

        Assert.True(access.MayPublish("city/north/air"));
        Assert.False(access.MayPublish("city/north/water"));
        Assert.False(access.MayPublish("city/north/air/extra"));
        Assert.True(access.MaySubscribe("city/#"));
        Assert.True(access.MaySubscribe("city/north/air"));
        Assert.True(access.MaySubscribe("city/+/air"));
        Assert.False(access.MaySubscribe("#"));
        Assert.False(access.MaySubscribe("dash/#"));
        Assert.False(access.MayPublish("public/x"));
    }

    [Fact]
    public void Deny_WinsOverReadAndWrite()
    {
        var access = City.Compile("contractor", "c1");

        Assert.False(access.MaySubscribe("city/secret/x"));
        // city/# overlaps the denied city/secret/#: refused whole, since delivery is not checked per message.
        Assert.False(access.MaySubscribe("city/#"));
        Assert.True(access.MaySubscribe("city/open/#"));
        Assert.False(access.MaySubscribe("city/+/x"));
        Assert.True(access.MayPublish("city/north/air"));
        Assert.False(access.MayPublish("city/secret/air"));
    }

    [Fact]
    public void Patterns_SubstituteUserNameAndClientId()
    {
        var access = City.Compile("dash", "panel-7");

        Assert.True(access.MayPublish("users/dash/settings"));
        Assert.True(access.MaySubscribe("users/dash/#"));
        Assert.False(access.MayPublish("users/city-app/settings"));
        Assert.False(access.MaySubscribe("users/+/settings"));
        Assert.True(access.MayPublish("clients/panel-7/status"));
        Assert.False(access.MayPublish("clients/panel-8/status"));
        Assert.False(access.MaySubscribe("clients/panel-7/status"));
    }

    [Theory]
    [InlineData("a+b")]
    [InlineData("#")]
    [InlineData("x/y")]
    [InlineData("")]
    public void Patterns_AreLeftOutForValuesThatWouldWidenThem(string clientId)
    {
        var access = City.Compile("dash", clientId);

        Assert.False(access.MayPublish("clients/a+b/status"));
        Assert.False(access.MayPublish("clients/x/y/status"));
        Assert.False(access.MayPublish("clients/anything/status"));
    }

    [Fact]
    public void Anonymous_GetsRulesBeforeTheFirstUserAndPatternsWithoutUserName()
    {
        var access = City.Compile(null, "anon-1");

        Assert.True(access.MaySubscribe("public/#"));
        Assert.False(access.MayPublish("public/x"));
        Assert.False(access.MaySubscribe("users/+/#"));
        Assert.True(access.MayPublish("clients/anon-1/status"));
    }

    [Fact]
    public void UnknownUser_HasOnlyPatterns()
    {
        var access = City.Compile("someone", "s1");

        Assert.False(access.MaySubscribe("public/#"));
        Assert.True(access.MayPublish("users/someone/a"));
        Assert.False(access.MayPublish("city/north/air"));
    }

    [Fact]
    public void TopicWithoutAccessWord_IsReadWrite_AndUserNameMayHoldSpaces()
    {
        var acl = MosquittoAclFile.Parse("acl", "user Control Room 2\n\ttopic   plant/line 1/#   \n");

        var access = acl.Compile("Control Room 2", "c");

        Assert.True(access.MayPublish("plant/line 1/valve"));
        Assert.True(access.MaySubscribe("plant/line 1/#"));
    }

    [Fact]
    public void WildcardRules_DoNotReachDollarTopics()
    {
        var access = MosquittoAclFile.Parse("acl", "user u\ntopic readwrite #\ntopic read +/x\n").Compile("u", "c");

        Assert.False(access.MayPublish("$devices/abc/telemetry"));
        Assert.False(access.MaySubscribe("$devices/#"));
        Assert.False(access.MaySubscribe("$SYS/x"));
        Assert.True(access.MaySubscribe("a/b/#"));
    }

    [Theory]
    [InlineData("a/#", "a", true)]
    [InlineData("a/+", "a/b", true)]
    [InlineData("a/+", "a/+", true)]
    [InlineData("a/+", "a/#", false)]
    [InlineData("a/b", "a/+", false)]
    [InlineData("+/+", "a/b", true)]
    [InlineData("a", "a/#", false)]
    [InlineData("#", "a/b/c", true)]
    [InlineData("a/b/c", "a/b", false)]
    public void Covers(string rule, string filter, bool expected) => Assert.Equal(expected, TopicAccess.Covers(rule, filter));

    [Theory]
    [InlineData("a/#", "a", true)]
    [InlineData("a/+", "+/b", true)]
    [InlineData("a/b", "a/c", false)]
    [InlineData("a/b/c", "a/+", false)]
    [InlineData("#", "$SYS/x", false)]
    [InlineData("$SYS/#", "$SYS/+", true)]
    [InlineData("a/+/c", "#", true)]
    public void Overlaps(string a, string b, bool expected)
    {
        Assert.Equal(expected, TopicAccess.Overlaps(a, b));
        Assert.Equal(expected, TopicAccess.Overlaps(b, a));
    }

    /// <summary>Case name, file text, the line number the error must name, a piece of its message.</summary>
    public static TheoryData<string, string, int, string> BadFiles() => new()
    {
        { "unknown keyword", "topic read a\nallow all\n", 2, "expected 'user NAME'" },
        { "user without name", "user\n", 1, "needs a user name" },
        { "user with only spaces", "user   \t \n", 1, "needs a user name" },
        { "topic without filter", "user u\ntopic read\n", 2, "needs a topic filter" },
        { "topic alone", "topic\n", 1, "needs a topic filter" },
        { "hash not last", "topic read a/#/b\n", 1, "not valid" },
        { "plus inside a level", "topic read a/b+/c\n", 1, "not valid" },
        { "hash inside a level", "pattern write a/%u#\n", 1, "not valid" },
        { "capitalised keyword", "Topic read a\n", 1, "expected" },
        { "nul character", "topic read a\0b\n", 1, "control" },
        { "escape sequence", "user \u001b[2Jroot\n", 1, "control" },
        { "overlong line", "topic read " + new string('a', 70_000) + "\n", 1, "longer" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void BadLine_IsRefusedWithFileAndLine(string name, string text, int line, string problem)
    {
        var e = Assert.Throws<BrokerUserFileException>(() => MosquittoAclFile.Parse("/etc/taihu/acl", text));

        Assert.Equal(line, e.Line);
        Assert.StartsWith($"/etc/taihu/acl line {line}: ", e.Message, StringComparison.Ordinal);
        Assert.True(e.Message.Contains(problem, StringComparison.Ordinal), $"{name}: {e.Message}");
    }

    [Fact]
    public void EmptyFile_AllowsNothing()
    {
        var access = MosquittoAclFile.Parse("acl", "# nothing\n\n").Compile("u", "c");

        Assert.False(access.MayPublish("a"));
        Assert.False(access.MaySubscribe("a"));
    }
}
