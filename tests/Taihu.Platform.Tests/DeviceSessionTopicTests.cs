using Taihu.Platform.Devices;

namespace Taihu.Platform.Tests;

/// <summary>A device's own topics as the publish path sorts them (by suffix, without building topic strings) and builds them.</summary>
public sealed class DeviceSessionTopicTests
{
    private static readonly Device Device = new(1, Guid.Parse("0a1b2c3d-4e5f-6071-8293-a4b5c6d7e8f9"), Guid.NewGuid(), "pump", "default", null, Guid.NewGuid(), null, false, null, 0);

    [Theory]
    [InlineData(0)]
    [InlineData(7)]
    [InlineData(10)]
    [InlineData(99)]
    [InlineData(100)]
    [InlineData(123456)]
    [InlineData(int.MaxValue)]
    [InlineData(-5)]
    public void OwnTopic_IsThePrefixTheSuffixAndTheNumber(int number) =>
        Assert.Equal("$devices/0a1b2c3d4e5f60718293a4b5c6d7e8f9/rpc/request/" + number.ToString(System.Globalization.CultureInfo.InvariantCulture),
            DeviceSession.OwnTopic(Device.Id, DeviceSession.RpcRequest, number));

    [Fact]
    public void IsOwnAndIsUnder_MatchOnlyThisDevicesTopics()
    {
        var session = new DeviceSession(Device);
        Assert.True(session.IsOwn(session.TelemetryTopic, DeviceSession.Telemetry));
        Assert.False(session.IsOwn(session.TelemetryTopic + "x", DeviceSession.Telemetry));
        Assert.False(session.IsOwn("$devices/00000000000000000000000000000000/telemetry", DeviceSession.Telemetry));
        Assert.False(session.IsOwn(session.Prefix + "telemetrx", DeviceSession.Telemetry));
        Assert.True(session.IsOwn(session.AttributesTopic, DeviceSession.Attributes));
        Assert.False(session.IsOwn(session.AttributesRequestPrefix + "1", DeviceSession.Attributes));
        Assert.True(session.IsUnder(session.AttributesRequestPrefix + "1", DeviceSession.AttributesRequest));
        Assert.True(session.IsUnder(session.RpcResponsePrefix + "42", DeviceSession.RpcResponse));
        Assert.True(session.IsUnder(session.RpcResponsePrefix + "42", DeviceSession.Rpc));
        Assert.False(session.IsUnder(session.RpcResponsePrefix + "42", DeviceSession.RpcRequest));
        Assert.False(session.IsUnder(session.Prefix + "rpc", DeviceSession.Rpc));
        Assert.Equal("42", session.After(session.RpcResponsePrefix + "42", DeviceSession.RpcResponse));
        Assert.Equal("rpc", session.After(session.GatewayPrefix + "rpc", DeviceSession.Gateway));
    }

    [Fact]
    public void Namespace_IsTheTenantIdWithoutDashes_OneStringPerTenant()
    {
        var tenant = Guid.NewGuid();
        Assert.Equal(tenant.ToString("N"), DeviceSession.Namespace(tenant));
        Assert.Same(DeviceSession.Namespace(tenant), DeviceSession.Namespace(tenant));
    }
}
