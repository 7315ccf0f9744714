using System.Text;
using Taihu.Platform.BrokerUsers;

namespace Taihu.Platform.Tests;

/// <summary>
/// Mosquitto password files. The expected hashes were computed outside .NET, from the algorithm Mosquitto
/// documents (Python's hashlib: <c>pbkdf2_hmac("sha512", password, salt, 101)</c> for <c>$7$</c>,
/// <c>sha512(password + salt)</c> for <c>$6$</c>), so these tests do not check the code against itself and need no
/// <c>mosquitto_passwd</c> at test time.
/// </summary>
public sealed class MosquittoPasswordFileTests
{
    /// <summary>Password "s3cret-pass", salt bytes 1..12, 101 iterations.</summary>
    public const string Pbkdf2Line = "city-app:$7$101$AQIDBAUGBwgJCgsM$QMdWfAKUjrlsmoh2JOkjsZMbkV0ilqp18D/YTz0+wL/RhxLaK5bDFdFnJziKJ3Nm5xZZrnia5O7E5To+dObdEw==";

    /// <summary>Password "old-pass", salt bytes 20..31.</summary>
    public const string Sha512Line = "legacy:$6$FBUWFxgZGhscHR4f$fjrEYG+eM7VbihlboBjNPf6dScztAZoCaoBdWX5xMw4eVatNYG9yiHbUtzoNWhOfH8rXKaps/8AccE6O+/oicQ==";

    [Fact]
    public void Pbkdf2Sha512_VerifiesTheRightPasswordOnly()
    {
        var users = MosquittoPasswordFile.Parse("passwd", Pbkdf2Line);

        var hash = users["city-app"];
        Assert.Equal(101, hash.Iterations);
        Assert.True(hash.Verify("s3cret-pass"u8));
        Assert.False(hash.Verify("s3cret-pasS"u8));
        Assert.False(hash.Verify("s3cret-pass "u8));
        Assert.False(hash.Verify(""u8));
    }

    [Fact]
    public void SaltedSha512_VerifiesTheRightPasswordOnly()
    {
        var users = MosquittoPasswordFile.Parse("passwd", Sha512Line);

        var hash = users["legacy"];
        Assert.Equal(0, hash.Iterations);
        Assert.True(hash.Verify("old-pass"u8));
        Assert.False(hash.Verify("old-pas"u8));
    }

    [Fact]
    public void CommentsBlankLinesAndCrLf_AreSkipped()
    {
        var text = "# users of the city\r\n\r\n" + Pbkdf2Line + "\r\n   \n" + Sha512Line + "\n";

        var users = MosquittoPasswordFile.Parse("passwd", text);

        Assert.Equal(["city-app", "legacy"], users.Keys.Order(StringComparer.Ordinal));
    }

    [Fact]
    public void BrokerUserDirectory_AuthenticatesFromTheCacheAfterTheFirstCheck()
    {
        var directory = new BrokerUserDirectory(MosquittoPasswordFile.Parse("passwd", Pbkdf2Line), null, 100);

        var first = directory.Authenticate("city-app", "s3cret-pass"u8, "c1");
        var second = directory.Authenticate("city-app", "s3cret-pass"u8, "c2");

        Assert.NotNull(first);
        Assert.NotNull(second);
        Assert.Equal("", first.Namespace);
        Assert.Equal("user/city-app", first.SessionOwner);
        Assert.Null(directory.Authenticate("city-app", "wrong"u8, "c1"));
        Assert.Null(directory.Authenticate("nobody", "s3cret-pass"u8, "c1"));
    }

    /// <summary>Case name, file text, the line number the error must name, a piece of its message.</summary>
    public static TheoryData<string, string, int, string> BadFiles() => new()
    {
        { "no colon", "city-app\n", 1, "user:hash" },
        { "empty user", ":$7$101$AQIDBAUGBwgJCgsM$" + Convert.ToBase64String(new byte[64]) + "\n", 1, "user:hash" },
        { "plain text password", "# c\nalice:secret\n", 2, "plain-text" },
        { "unknown scheme", "alice:$5$abc$def\n", 1, "$7$" },
        { "iterations not a number", "alice:$7$x1$AQIDBAUGBwgJCgsM$" + Convert.ToBase64String(new byte[64]), 1, "iteration" },
        { "iterations zero", "alice:$7$0$AQIDBAUGBwgJCgsM$" + Convert.ToBase64String(new byte[64]), 1, "iteration" },
        { "iterations negative", "alice:$7$-5$AQIDBAUGBwgJCgsM$" + Convert.ToBase64String(new byte[64]), 1, "iteration" },
        { "iterations huge", "alice:$7$99999999999$AQIDBAUGBwgJCgsM$" + Convert.ToBase64String(new byte[64]), 1, "iteration" },
        { "salt not base64", "alice:$7$101$***$" + Convert.ToBase64String(new byte[64]), 1, "salt" },
        { "salt empty", "alice:$7$101$$" + Convert.ToBase64String(new byte[64]), 1, "salt" },
        { "hash too short", "alice:$7$101$AQIDBAUGBwgJCgsM$" + Convert.ToBase64String(new byte[32]), 1, "64 bytes" },
        { "hash not base64", "alice:$6$AQIDBAUGBwgJCgsM$not-base64!", 1, "64 bytes" },
        { "too many fields", "alice:$7$101$AQIDBAUGBwgJCgsM$" + Convert.ToBase64String(new byte[64]) + "$x", 1, "$7$" },
        { "duplicate user", Pbkdf2Line + "\n" + Pbkdf2Line + "\n", 2, "already" },
        { "control character in name", "al\u0001ice:$6$FBUWFxgZGhscHR4f$" + Convert.ToBase64String(new byte[64]), 1, "control" },
    };

    [Theory]
    [MemberData(nameof(BadFiles))]
    public void BadLine_IsRefusedWithFileAndLine(string name, string text, int line, string problem)
    {
        var e = Assert.Throws<BrokerUserFileException>(() => MosquittoPasswordFile.Parse("/etc/taihu/passwd", text));

        Assert.Equal(line, e.Line);
        Assert.StartsWith($"/etc/taihu/passwd line {line}: ", e.Message, StringComparison.Ordinal);
        Assert.True(e.Message.Contains(problem, StringComparison.Ordinal), $"{name}: {e.Message}");
    }

    [Fact]
    public void MissingFile_IsRefusedNamingIt()
    {
        var path = Path.Combine(Path.GetTempPath(), "taihu-no-such-passwd-" + Guid.NewGuid().ToString("N"));

        var e = Assert.Throws<BrokerUserFileException>(() => MosquittoPasswordFile.Load(path));

        Assert.Contains(path, e.Message, StringComparison.Ordinal);
        Assert.Contains("does not exist", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void InvalidUtf8_IsRefused()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllBytes(path, [.. Encoding.ASCII.GetBytes("al"), 0xFF, 0xFE, .. Encoding.ASCII.GetBytes(":x\n")]);

            var e = Assert.Throws<BrokerUserFileException>(() => MosquittoPasswordFile.Load(path));

            Assert.Contains("UTF-8", e.Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }
}
