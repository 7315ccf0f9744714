using System.Text;
using Taihu.Sim.Running;

namespace Taihu.Sim.Tests;

/// <summary>How the fault proxy tells connections apart: the client id of their MQTT CONNECT, read from the first bytes.</summary>
public sealed class FaultProxyTests
{
    // CONNECT, 3.1.1, clean session, keep alive 60, client id "sim-1-0-7" (MQTT 3.1.1 section 3.1).
    private static readonly byte[] Connect311 =
    [
        0x10, 21, 0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 0x04, 0x02, 0x00, 0x3C,
        0x00, 0x09, .. "sim-1-0-7"u8,
    ];

    // CONNECT, 5.0, with properties (Session Expiry Interval 0x11 = 120) before the client id "pos-3".
    private static readonly byte[] Connect5 =
    [
        0x10, 23, 0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 0x05, 0x02, 0x00, 0x3C,
        0x05, 0x11, 0x00, 0x00, 0x00, 0x78, 0x00, 0x05, .. "pos-3"u8,
    ];

    [Fact]
    public void ClientId_IsRead_From311AndFrom5()
    {
        Assert.Equal("sim-1-0-7", FaultProxy.ConnectClientId(Connect311));
        Assert.Equal("pos-3", FaultProxy.ConnectClientId(Connect5));
    }

    [Fact]
    public void ClientId_WaitsForTheWholeOfIt_AtEverySplit()
    {
        foreach (var connect in new[] { Connect311, Connect5 })
        {
            for (var length = 0; length < connect.Length; length++)
            {
                Assert.Null(FaultProxy.ConnectClientId(connect.AsSpan(0, length)));
            }
        }
    }

    [Fact]
    public void NotAConnect_IsPassedOnUnnamed()
    {
        Assert.Equal("?", FaultProxy.ConnectClientId(Encoding.ASCII.GetBytes("GET / HTTP/1.1\r\n")));
        Assert.Equal("?", FaultProxy.ConnectClientId([0x30, 0x00]));
    }

    [Fact]
    public void AnOverlongLength_NeverReadsPastTheBytes()
    {
        Assert.Null(FaultProxy.ConnectClientId([0x10, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F]));
        byte[] lying = [0x10, 12, 0x00, 0x04, (byte)'M', (byte)'Q', (byte)'T', (byte)'T', 0x04, 0x02, 0x00, 0x3C, 0xFF, 0xFF, 0x41];
        Assert.Null(FaultProxy.ConnectClientId(lying));
    }
}
