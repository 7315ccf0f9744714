using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Mosquitto's own command-line clients against the server. The message is published retained before the
/// subscriber starts, so the subscriber receives it whenever it connects: no race between the two processes.
/// Each test has its own server, as '#' would also deliver another test's retained message.
/// </summary>
public sealed class MosquittoInteropTests
{
    [Fact]
    public async Task RetainedQos2Publish_V311_ReachesV5Subscriber()
    {
        await using var server = await ServerProcess.StartAsync();
        var port = server.TcpPort.ToString(System.Globalization.CultureInfo.InvariantCulture);

        var published = await MosquittoClient.PublishAsync("-h", "127.0.0.1", "-p", port, "-V", "mqttv311", "-q", "2", "-r", "-t", "a/b", "-m", "hi");
        Assert.True(published.ExitCode == 0, published.Output);

        var received = await MosquittoClient.SubscribeAsync("-h", "127.0.0.1", "-p", port, "-V", "mqttv5", "-t", "#", "-v", "-C", "1");
        Assert.True(received.ExitCode == 0, received.Output);
        Assert.Equal("a/b hi", received.Output.Trim());
    }

    [Fact]
    public async Task RetainedQos2Publish_OverTls_TrustingTheDevelopmentCertificate()
    {
        await using var server = await ServerProcess.StartAsync();
        Assert.True(File.Exists(server.CertificatePath), $"No development certificate at {server.CertificatePath}");
        var port = server.TlsPort.ToString(System.Globalization.CultureInfo.InvariantCulture);

        var published = await MosquittoClient.PublishAsync("--cafile", server.CertificatePath, "-h", "localhost", "-p", port, "-V", "mqttv311", "-q", "2", "-r", "-t", "a/b", "-m", "hi");
        Assert.True(published.ExitCode == 0, published.Output);

        var received = await MosquittoClient.SubscribeAsync("--cafile", server.CertificatePath, "-h", "localhost", "-p", port, "-V", "mqttv5", "-t", "#", "-v", "-C", "1");
        Assert.True(received.ExitCode == 0, received.Output);
        Assert.Equal("a/b hi", received.Output.Trim());
    }
}
