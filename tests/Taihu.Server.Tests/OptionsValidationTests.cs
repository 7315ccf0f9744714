using System.Globalization;
using Taihu.Broker;
using Taihu.Broker.Hosting;

namespace Taihu.Server.Tests;

/// <summary>
/// Every start-up validation rule of <see cref="BrokerOptions"/>, <see cref="ListenerOptions"/> and <see cref="ServerOptions"/>: the defaults pass,
/// each broken rule gives exactly one message naming its setting, and the values at the edge of each rule pass.
/// </summary>
public sealed class OptionsValidationTests
{
    [Fact]
    public void BrokerOptions_Defaults_AreValid() => Assert.Empty(new BrokerOptions().Validate());

    [Theory]
    [InlineData(nameof(BrokerOptions.MaximumPacketSize), "63")]
    [InlineData(nameof(BrokerOptions.MaximumPacketSize), "0")]
    [InlineData(nameof(BrokerOptions.MaximumPacketSize), "268435461")]
    [InlineData(nameof(BrokerOptions.MaximumInflightMessages), "0")]
    [InlineData(nameof(BrokerOptions.MaximumInflightMessages), "-1")]
    [InlineData(nameof(BrokerOptions.MaximumInflightMessages), "65536")]
    [InlineData(nameof(BrokerOptions.MaximumQueuedMessages), "-1")]
    [InlineData(nameof(BrokerOptions.MaximumOutboundQueue), "15")]
    [InlineData(nameof(BrokerOptions.MaximumConnections), "0")]
    [InlineData(nameof(BrokerOptions.MaximumTopicLength), "0")]
    [InlineData(nameof(BrokerOptions.MaximumTopicLength), "65536")]
    [InlineData(nameof(BrokerOptions.MaximumTopicLevels), "0")]
    [InlineData(nameof(BrokerOptions.MaximumRetainedMessages), "-1")]
    [InlineData(nameof(BrokerOptions.ConnectTimeoutSeconds), "0")]
    [InlineData(nameof(BrokerOptions.HousekeepingInterval), "00:00:00")]
    [InlineData(nameof(BrokerOptions.HousekeepingInterval), "-00:00:01")]
    [InlineData(nameof(BrokerOptions.StateFlushInterval), "00:00:00")]
    [InlineData(nameof(BrokerOptions.SessionSnapshotInterval), "-00:00:01")]
    public void BrokerOptions_BrokenRule_GivesOneMessageNamingTheSetting(string setting, string value)
    {
        var options = new BrokerOptions();
        Set(options, setting, value);

        var problem = Assert.Single(options.Validate());

        Assert.StartsWith($"Broker:{setting} ", problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(nameof(BrokerOptions.MaximumPacketSize), "64")]
    [InlineData(nameof(BrokerOptions.MaximumPacketSize), "268435460")]
    [InlineData(nameof(BrokerOptions.MaximumInflightMessages), "1")]
    [InlineData(nameof(BrokerOptions.MaximumInflightMessages), "65535")]
    [InlineData(nameof(BrokerOptions.MaximumQueuedMessages), "0")]
    [InlineData(nameof(BrokerOptions.MaximumOutboundQueue), "16")]
    [InlineData(nameof(BrokerOptions.MaximumConnections), "1")]
    [InlineData(nameof(BrokerOptions.MaximumTopicLength), "1")]
    [InlineData(nameof(BrokerOptions.MaximumTopicLength), "65535")]
    [InlineData(nameof(BrokerOptions.MaximumTopicLevels), "1")]
    [InlineData(nameof(BrokerOptions.MaximumRetainedMessages), "0")]
    [InlineData(nameof(BrokerOptions.ConnectTimeoutSeconds), "1")]
    [InlineData(nameof(BrokerOptions.HousekeepingInterval), "00:00:00.001")]
    [InlineData(nameof(BrokerOptions.StateFlushInterval), "00:00:00.001")]
    [InlineData(nameof(BrokerOptions.SessionSnapshotInterval), "00:00:00.001")]
    [InlineData(nameof(BrokerOptions.SysInterval), "0")]
    public void BrokerOptions_EdgeOfRule_IsValid(string setting, string value)
    {
        var options = new BrokerOptions();
        Set(options, setting, value);

        Assert.Empty(options.Validate());
    }

    [Fact]
    public void BrokerOptions_SeveralBrokenRules_AreAllReported()
    {
        var options = new BrokerOptions { MaximumPacketSize = 1, MaximumInflightMessages = 0, MaximumConnections = 0 };

        var problems = options.Validate().ToList();

        Assert.Equal(3, problems.Count);
        Assert.Contains(problems, p => p.StartsWith("Broker:MaximumPacketSize ", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Broker:MaximumInflightMessages ", StringComparison.Ordinal));
        Assert.Contains(problems, p => p.StartsWith("Broker:MaximumConnections ", StringComparison.Ordinal));
    }

    [Fact]
    public void ListenerOptions_Defaults_AreValid() => Assert.Empty(new ListenerOptions().Validate());

    [Theory]
    [InlineData(nameof(ListenerOptions.TcpPort), "-2")]
    [InlineData(nameof(ListenerOptions.TcpPort), "65536")]
    [InlineData(nameof(ListenerOptions.TlsPort), "-2")]
    [InlineData(nameof(ListenerOptions.TlsPort), "65536")]
    [InlineData(nameof(ListenerOptions.WebSocketPort), "-2")]
    [InlineData(nameof(ListenerOptions.WebSocketPort), "65536")]
    [InlineData(nameof(ListenerOptions.SecureWebSocketPort), "-2")]
    [InlineData(nameof(ListenerOptions.SecureWebSocketPort), "65536")]
    [InlineData(nameof(ListenerOptions.BindAddress), "not-an-address")]
    [InlineData(nameof(ListenerOptions.BindAddress), "")]
    [InlineData(nameof(ListenerOptions.BindAddress), "256.0.0.1")]
    [InlineData(nameof(ListenerOptions.WebSocketPath), "mqtt")]
    [InlineData(nameof(ListenerOptions.WebSocketPath), "")]
    [InlineData(nameof(ListenerOptions.TcpMaximumSegmentSize), "-1")]
    [InlineData(nameof(ListenerOptions.TcpMaximumSegmentSize), "535")]
    [InlineData(nameof(ListenerOptions.TcpMaximumSegmentSize), "32768")]
    public void ListenerOptions_BrokenRule_GivesOneMessageNamingTheSetting(string setting, string value)
    {
        var options = new ListenerOptions();
        Set(options, setting, value);

        var problem = Assert.Single(options.Validate());

        Assert.StartsWith($"Listeners:{setting} ", problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(nameof(ListenerOptions.TcpMaximumSegmentSize), "0")]
    [InlineData(nameof(ListenerOptions.TcpMaximumSegmentSize), "536")]
    [InlineData(nameof(ListenerOptions.TcpMaximumSegmentSize), "32767")]
    [InlineData(nameof(ListenerOptions.TcpPort), "-1")]
    [InlineData(nameof(ListenerOptions.TcpPort), "0")]
    [InlineData(nameof(ListenerOptions.TcpPort), "65535")]
    [InlineData(nameof(ListenerOptions.TlsPort), "-1")]
    [InlineData(nameof(ListenerOptions.WebSocketPort), "-1")]
    [InlineData(nameof(ListenerOptions.SecureWebSocketPort), "-1")]
    [InlineData(nameof(ListenerOptions.BindAddress), "127.0.0.1")]
    [InlineData(nameof(ListenerOptions.BindAddress), "::")]
    [InlineData(nameof(ListenerOptions.BindAddress), "::1")]
    [InlineData(nameof(ListenerOptions.BindAddress), "localhost")]
    [InlineData(nameof(ListenerOptions.WebSocketPath), "/")]
    [InlineData(nameof(ListenerOptions.WebSocketPath), "/ws/mqtt")]
    public void ListenerOptions_EdgeOfRule_IsValid(string setting, string value)
    {
        var options = new ListenerOptions();
        Set(options, setting, value);

        Assert.Empty(options.Validate());
    }

    [Fact]
    public void ListenerOptions_EveryBrokenPort_IsReported()
    {
        var options = new ListenerOptions { TcpPort = -5, TlsPort = 70_000, WebSocketPort = -2, SecureWebSocketPort = 65_536 };

        var problems = options.Validate().ToList();

        Assert.Equal(
            ["Listeners:TcpPort", "Listeners:TlsPort", "Listeners:WebSocketPort", "Listeners:SecureWebSocketPort"],
            problems.Select(p => p[..p.IndexOf(' ', StringComparison.Ordinal)]));
    }

    [Fact]
    public void ServerOptions_Defaults_AreValid() => Assert.Empty(new ServerOptions().Validate());

    [Theory]
    [InlineData(nameof(ServerOptions.HttpPort), "-2")]
    [InlineData(nameof(ServerOptions.HttpPort), "65536")]
    [InlineData(nameof(ServerOptions.HttpPort), "2147483647")]
    public void ServerOptions_BrokenRule_GivesOneMessageNamingTheSetting(string setting, string value)
    {
        var options = new ServerOptions();
        Set(options, setting, value);

        var problem = Assert.Single(options.Validate());

        // The host's settings keep the keys they had under the broker's "Listeners" section.
        Assert.StartsWith($"Listeners:{setting} ", problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(nameof(ServerOptions.HttpPort), "-1")]
    [InlineData(nameof(ServerOptions.HttpPort), "0")]
    [InlineData(nameof(ServerOptions.HttpPort), "65535")]
    public void ServerOptions_EdgeOfRule_IsValid(string setting, string value)
    {
        var options = new ServerOptions();
        Set(options, setting, value);

        Assert.Empty(options.Validate());
    }

    [Fact]
    public void LiveOptions_Defaults_AreValid() => Assert.Empty(new LiveOptions().Validate());

    [Theory]
    [InlineData(nameof(LiveOptions.MaxFrameBytes), "1023")]
    [InlineData(nameof(LiveOptions.MaxFrameBytes), "16777217")]
    [InlineData(nameof(LiveOptions.MaxSubscriptionsPerSocket), "0")]
    [InlineData(nameof(LiveOptions.OutboundQueueLimit), "0")]
    [InlineData(nameof(LiveOptions.CloseTimeout), "00:00:00")]
    [InlineData(nameof(LiveOptions.AuthenticationTimeout), "00:00:00")]
    public void LiveOptions_BrokenRule_GivesOneMessageNamingTheSetting(string setting, string value)
    {
        var options = new LiveOptions();
        Set(options, setting, value);

        var problem = Assert.Single(options.Validate());

        Assert.StartsWith($"Live:{setting} ", problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(nameof(LiveOptions.MaxFrameBytes), "1024")]
    [InlineData(nameof(LiveOptions.MaxFrameBytes), "16777216")]
    [InlineData(nameof(LiveOptions.MaxSubscriptionsPerSocket), "1")]
    [InlineData(nameof(LiveOptions.OutboundQueueLimit), "1")]
    public void LiveOptions_EdgeOfRule_IsValid(string setting, string value)
    {
        var options = new LiveOptions();
        Set(options, setting, value);

        Assert.Empty(options.Validate());
    }

    /// <summary>Sets a property from its configuration text, as the configuration binder would.</summary>
    [Fact]
    public void SecurityOptions_Defaults_AreValid() => Assert.Empty(new Taihu.Platform.SecurityOptions().Validate());

    [Theory]
    [InlineData("MaxUnauthenticatedRequestBytes", "255")]
    [InlineData("MaxUnauthenticatedRequestBytes", "1048577")]
    [InlineData("MaxRequestBodyBytes", "1023")]
    [InlineData("MaxRequestBodyBytes", "268435457")]
    [InlineData("MinimumAccessTokenLength", "0")]
    [InlineData("MinimumAccessTokenLength", "256")]
    [InlineData("DeviceAuthFailuresPerMinute", "0")]
    [InlineData("LoginFailuresPerAddressPerMinute", "0")]
    [InlineData("MaximumTrackedAddresses", "99")]
    [InlineData("FailedLoginsBeforeBackoff", "0")]
    [InlineData("LoginBackoff", "00:00:00")]
    [InlineData("LoginBackoff", "01:00:01")]
    public void SecurityOptions_BrokenRule_GivesOneMessageNamingTheSetting(string setting, string value)
    {
        var options = new Taihu.Platform.SecurityOptions();
        Set(options, setting, value);

        var problem = Assert.Single(options.Validate());

        Assert.StartsWith($"Security:{setting} ", problem, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("MaxUnauthenticatedRequestBytes", "256")]
    [InlineData("MaxRequestBodyBytes", "268435456")]
    [InlineData("MinimumAccessTokenLength", "1")]
    [InlineData("MinimumAccessTokenLength", "255")]
    [InlineData("DeviceAuthFailuresPerMinute", "1")]
    [InlineData("MaximumTrackedAddresses", "100")]
    [InlineData("LoginBackoff", "01:00:00")]
    public void SecurityOptions_EdgeOfRule_IsValid(string setting, string value)
    {
        var options = new Taihu.Platform.SecurityOptions();
        Set(options, setting, value);

        Assert.Empty(options.Validate());
    }

    [Fact]
    public void StorageAndIngestOptions_Defaults_AreValid()
    {
        Assert.Empty(new Taihu.Platform.StorageOptions().Validate());
        Assert.Empty(new Taihu.Platform.IngestOptions().Validate());
    }

    [Fact]
    public void StorageOptions_PostgreSqlWithoutConnectionString_IsReported()
    {
        var options = new Taihu.Platform.StorageOptions { Provider = Taihu.Platform.StorageProvider.PostgreSql };

        Assert.StartsWith("Storage:ConnectionString ", Assert.Single(options.Validate()), StringComparison.Ordinal);

        options.ConnectionString = "Host=127.0.0.1";
        Assert.Empty(options.Validate());
    }

    [Theory]
    [InlineData("QueueCapacity", "0")]
    [InlineData("MaxBatchPoints", "0")]
    [InlineData("MaxPayloadBytes", "-1")]
    [InlineData("MaxFutureSkew", "-00:00:01")]
    [InlineData("MinCommitInterval", "-00:00:00.001")]
    [InlineData("MinCommitInterval", "00:00:01.001")]
    public void IngestOptions_BrokenRule_GivesOneMessageNamingTheSetting(string setting, string value)
    {
        var options = new Taihu.Platform.IngestOptions();
        Set(options, setting, value);

        Assert.Contains($"Ingest:{setting}", Assert.Single(options.Validate()), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("QueueCapacity", "1")]
    [InlineData("MaxBatchPoints", "1")]
    [InlineData("MaxPayloadBytes", "1")]
    [InlineData("MaxFutureSkew", "00:00:00")]
    [InlineData("MinCommitInterval", "00:00:00")]
    [InlineData("MinCommitInterval", "00:00:01")]
    public void IngestOptions_EdgeOfRule_IsValid(string setting, string value)
    {
        var options = new Taihu.Platform.IngestOptions();
        Set(options, setting, value);

        Assert.Empty(options.Validate());
    }

    private static void Set(object options, string setting, string value)
    {
        var property = options.GetType().GetProperty(setting) ?? throw new ArgumentException($"No setting {setting}.", nameof(setting));
        var converted = property.PropertyType == typeof(TimeSpan)
            ? TimeSpan.Parse(value, CultureInfo.InvariantCulture)
            : property.PropertyType == typeof(string) ? value : Convert.ChangeType(value, property.PropertyType, CultureInfo.InvariantCulture);
        property.SetValue(options, converted);
    }
}
