using System.Globalization;
using System.Net;
using MQTTnet;
using MQTTnet.Formatter;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Plain broker users from a Mosquitto password file and ACL file (Security:MqttPasswordFile, Security:MqttAclFile),
/// driven by Mosquitto's own clients and, where the exact SUBACK/PUBACK code matters, by MQTTnet. One server for
/// the class; each test uses its own topics, so retained messages of one test never reach another's subscriber.
/// </summary>
public sealed class BrokerUserFileTests : IAsyncLifetime
{
    // Computed outside .NET from Mosquitto's documented algorithms (see MosquittoPasswordFileTests in the platform tests):
    // city-app / "s3cret-pass" as $7$ (PBKDF2-SHA512, 101 iterations), legacy / "old-pass" as $6$ (salted SHA-512).
    private const string PasswordFile = """
        # written by mosquitto_passwd
        city-app:$7$101$AQIDBAUGBwgJCgsM$QMdWfAKUjrlsmoh2JOkjsZMbkV0ilqp18D/YTz0+wL/RhxLaK5bDFdFnJziKJ3Nm5xZZrnia5O7E5To+dObdEw==
        legacy:$6$FBUWFxgZGhscHR4f$fjrEYG+eM7VbihlboBjNPf6dScztAZoCaoBdWX5xMw4eVatNYG9yiHbUtzoNWhOfH8rXKaps/8AccE6O+/oicQ==
        """;

    private const string AclFile = """
        user city-app
        topic write city/+/air
        topic read city/#

        # every user: a tree of its own
        pattern readwrite users/%u/#
        """;

    private const int AuthFailuresPerMinute = 5;

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "taihu-broker-users", Guid.NewGuid().ToString("N"));
    private ServerProcess _server = null!;

    private string Port => _server.TcpPort.ToString(CultureInfo.InvariantCulture);

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_directory);
        var passwords = Write("passwd", PasswordFile);
        var acl = Write("acl", AclFile);
        _server = await ServerProcess.StartAsync(new Dictionary<string, string>
        {
            ["Security__MqttPasswordFile"] = passwords,
            ["Security__MqttAclFile"] = acl,
            ["Security__DeviceAuthFailuresPerMinute"] = AuthFailuresPerMinute.ToString(CultureInfo.InvariantCulture),
        });
    }

    public async Task DisposeAsync()
    {
        await _server.DisposeAsync();
        Directory.Delete(_directory, recursive: true);
    }

    private string Write(string name, string text)
    {
        var path = Path.Combine(_directory, name);
        File.WriteAllText(path, text);
        return path;
    }

    [Fact]
    public async Task UserMayWriteCityAir_AndReadCity_WithMosquittoClients()
    {
        var published = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", Port, "-V", "mqttv311", "-u", "city-app", "-P", "s3cret-pass",
            "-q", "1", "-r", "-t", "city/north/air", "-m", "pm25=12");
        Assert.True(published.ExitCode == 0, published.Output);

        var received = await MosquittoClient.SubscribeAsync("-h", "127.0.0.1", "-p", Port, "-V", "mqttv5", "-u", "city-app", "-P", "s3cret-pass",
            "-t", "city/north/#", "-v", "-C", "1");
        Assert.True(received.ExitCode == 0, received.Output);
        Assert.Equal("city/north/air pm25=12", received.Output.Trim());
    }

    [Fact]
    public async Task PatternRule_GivesTheLegacyHashUserItsOwnTree_AndNoOneElses()
    {
        var published = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", Port, "-V", "mqttv5", "-u", "legacy", "-P", "old-pass",
            "-q", "1", "-r", "-t", "users/legacy/status", "-m", "up");
        Assert.True(published.ExitCode == 0, published.Output);
        var received = await MosquittoClient.SubscribeAsync("-h", "127.0.0.1", "-p", Port, "-u", "legacy", "-P", "old-pass",
            "-t", "users/legacy/#", "-v", "-C", "1");
        Assert.True(received.ExitCode == 0, received.Output);
        Assert.Equal("users/legacy/status up", received.Output.Trim());

        await using var legacy = await DeviceClient.ConnectAsync(_server, "legacy", MqttProtocolVersion.V500, "old-pass");
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await legacy.TryPublishAsync("users/city-app/status", "x")).ReasonCode);
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await legacy.TrySubscribeAsync("users/+/status"));
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await legacy.TryPublishAsync("city/north/air", "x")).ReasonCode);
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await legacy.TrySubscribeAsync("city/#"));
    }

    [Fact]
    public async Task RefusedPublishAndSubscribe_V5_Get0x87()
    {
        await using var client = await DeviceClient.ConnectAsync(_server, "city-app", MqttProtocolVersion.V500, "s3cret-pass");

        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await client.TryPublishAsync("city/east/water", "1")).ReasonCode);
        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await client.TryPublishAsync("city/east/air/extra", "1")).ReasonCode);
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await client.TrySubscribeAsync("#"));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await client.TrySubscribeAsync("$share/g/other/#"));
        Assert.Equal(MqttClientSubscribeResultCode.GrantedQoS1, await client.TrySubscribeAsync("$share/g/city/east/#"));
        Assert.True((await client.TryPublishAsync("city/east/air", "ok")).IsSuccess);
    }

    [Fact]
    public async Task RefusedSubscribe_V311_Gets0x80_AndRefusedPublishIsDropped()
    {
        await using var reader = await DeviceClient.ConnectAsync(_server, "city-app", MqttProtocolVersion.V500, "s3cret-pass", clientId: "reader-311");
        await reader.SubscribeAsync("city/south/#");
        await using var writer = await DeviceClient.ConnectAsync(_server, "city-app", MqttProtocolVersion.V311, "s3cret-pass", clientId: "writer-311");

        Assert.Equal(MqttClientSubscribeResultCode.UnspecifiedError, await writer.TrySubscribeAsync("elsewhere/#")); // 0x80 Failure

        // 3.1.1 has no code for it: acknowledged and dropped, as Mosquitto does. The allowed publish after it is the
        // sync point: the reader gets it first, so the refused one went nowhere.
        Assert.True((await writer.TryPublishAsync("city/south/water", "refused")).IsSuccess);
        await writer.PublishAsync("city/south/air", "allowed");
        var first = await reader.NextAsync();
        Assert.Equal("city/south/air", first.Topic);
        Assert.False(reader.TryTake(out _));
    }

    [Fact]
    public async Task WrongPassword_IsRefused_AsBadCredentials()
    {
        var refused = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", Port, "-V", "mqttv311", "-u", "city-app", "-P", "wrong",
            "-t", "city/west/air", "-m", "x");
        Assert.NotEqual(0, refused.ExitCode);
        Assert.Contains("bad user name or password", refused.Output, StringComparison.OrdinalIgnoreCase);

        var from = IPAddress.Parse("127.0.0.21");
        var (v5, v5Ack) = await RawMqttClient.ConnectWithCredentialsAsync(_server.TcpPort, "w5", 5, "city-app", "wrong", from);
        await v5.DisposeAsync();
        Assert.Equal(0x86, v5Ack.Body[1]);
        var (v4, v4Ack) = await RawMqttClient.ConnectWithCredentialsAsync(_server.TcpPort, "w4", 4, "city-app", "wrong", from);
        await v4.DisposeAsync();
        Assert.Equal(4, v4Ack.Body[1]);
        var (unknown, unknownAck) = await RawMqttClient.ConnectWithCredentialsAsync(_server.TcpPort, "w6", 5, "nobody", "s3cret-pass", from);
        await unknown.DisposeAsync();
        Assert.Equal(0x86, unknownAck.Body[1]);
    }

    [Fact]
    public async Task WrongPasswords_CountAgainstTheAddress_LikeDeviceCredentials()
    {
        var from = IPAddress.Parse("127.0.0.22");
        for (var i = 0; i < AuthFailuresPerMinute; i++)
        {
            var (client, connAck) = await RawMqttClient.ConnectWithCredentialsAsync(_server.TcpPort, $"guess-{i}", 5, "city-app", $"guess-{i}", from);
            await client.DisposeAsync();
            Assert.Equal(0x86, connAck.Body[1]);
        }

        // The right password too is refused unchecked now (a refusal must tell a guesser nothing).
        var (last, lastAck) = await RawMqttClient.ConnectWithCredentialsAsync(_server.TcpPort, "right", 5, "city-app", "s3cret-pass", from);
        await last.DisposeAsync();
        Assert.Equal(0x9F, lastAck.Body[1]);
    }

    [Fact]
    public async Task AnonymousClient_HasOnlyWhatTheAclFileGivesIt_HereNothing()
    {
        // The test servers allow anonymous clients (Security:AllowAnonymousMqtt); this ACL file has no rules for them.
        await using var anonymous = await DeviceClient.ConnectAsync(_server, null, MqttProtocolVersion.V500);

        Assert.Equal(MqttClientPublishReasonCode.NotAuthorized, (await anonymous.TryPublishAsync("city/west/air", "x")).ReasonCode);
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await anonymous.TrySubscribeAsync("city/#"));
        Assert.Equal(MqttClientSubscribeResultCode.NotAuthorized, await anonymous.TrySubscribeAsync("users/+/status"));
    }
}

/// <summary>A password or ACL file that does not parse stops the server at start, naming the setting, file and line.</summary>
public sealed class BrokerUserFileStartupTests
{
    [Theory]
    [InlineData("Security__MqttPasswordFile", "Security:MqttPasswordFile", "# users\nalice:plaintext\n", "line 2")]
    [InlineData("Security__MqttAclFile", "Security:MqttAclFile", "user alice\ntopic read a/#/b\n", "line 2")]
    [InlineData("Security__MqttAclFile", "Security:MqttAclFile", "user alice\nallow everything\n", "line 2")]
    public async Task BadFile_StopsTheServerNamingFileAndLine(string variable, string setting, string text, string line)
    {
        var path = Path.GetTempFileName();
        try
        {
            await File.WriteAllTextAsync(path, text);

            var (exitCode, output) = await ServerProcess.RunToExitAsync(new Dictionary<string, string> { [variable] = path });

            Assert.Equal(1, exitCode);
            Assert.Contains("Taihu cannot start:", output, StringComparison.Ordinal);
            Assert.Contains($"{setting}: {path} {line}: ", output, StringComparison.Ordinal);
            Assert.DoesNotContain("Taihu listening on", output, StringComparison.Ordinal);
            Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task MissingFile_StopsTheServer()
    {
        var path = Path.Combine(Path.GetTempPath(), "taihu-missing-" + Guid.NewGuid().ToString("N"));

        var (exitCode, output) = await ServerProcess.RunToExitAsync(new Dictionary<string, string> { ["Security__MqttPasswordFile"] = path });

        Assert.Equal(1, exitCode);
        Assert.Contains($"Security:MqttPasswordFile: {path}: the file does not exist.", output, StringComparison.Ordinal);
    }
}
