using Microsoft.Extensions.Time.Testing;
using Taihu.Protocols.Hj212;

namespace Taihu.Protocols.Tests;

/// <summary>Split HJ 212 messages (PNUM/PNO) put back together, in any order, within limits.</summary>
public sealed class Hj212ReassemblyTests
{
    private readonly FakeTimeProvider _time = new();

    private static Hj212Message Packet(int count, int number, string cp, string qn = "20240101000000000", string mn = "STATION1") =>
        Parse($"QN={qn};ST=22;CN=2061;PW=123456;MN={mn};Flag=7;PNUM={count};PNO={number};CP=&&{cp}&&");

    private static Hj212Message Parse(string segment)
    {
        Assert.True(Hj212Message.TryParse(segment, out var message, out var error), error);
        return message!;
    }

    [Fact]
    public void UnsplitMessage_IsWholeAtOnce()
    {
        var reassembly = new Hj212Reassembly(_time);
        var message = Parse("QN=1;ST=22;CN=2011;PW=1;MN=A;Flag=5;CP=&&DataTime=20240101000000&&");
        Assert.Equal(Hj212PacketOutcome.Whole, reassembly.Add(message, out var whole, out _));
        Assert.Same(message, whole);
    }

    [Fact]
    public void Packets_InAnyOrder_MakeOneMessage_WithCpInPnoOrder()
    {
        var reassembly = new Hj212Reassembly(_time);
        Assert.Equal(Hj212PacketOutcome.Waiting, reassembly.Add(Packet(3, 3, "a3-Avg=3"), out _, out _));
        Assert.Equal(Hj212PacketOutcome.Waiting, reassembly.Add(Packet(3, 1, "DataTime=20240101000000;a1-Avg=1"), out _, out _));
        // A packet sent again changes nothing.
        Assert.Equal(Hj212PacketOutcome.Waiting, reassembly.Add(Packet(3, 1, "DataTime=20240101000000;a1-Avg=99"), out _, out _));
        Assert.Equal(Hj212PacketOutcome.Whole, reassembly.Add(Packet(3, 2, "a2-Avg=2"), out var whole, out _));
        Assert.Equal("DataTime=20240101000000;a1-Avg=1;a2-Avg=2;a3-Avg=3", whole!.Cp);
        Assert.Equal((5, (int?)null, (int?)null), (whole.Flag, whole.PacketCount, whole.PacketNumber));
        Assert.Equal(0, reassembly.PendingCount);
    }

    [Fact]
    public void MessagesOfOtherStationsOrQn_AreKeptApart()
    {
        var reassembly = new Hj212Reassembly(_time);
        reassembly.Add(Packet(2, 1, "x=1", qn: "1"), out _, out _);
        reassembly.Add(Packet(2, 1, "x=2", qn: "2"), out _, out _);
        reassembly.Add(Packet(2, 1, "x=3", mn: "OTHER"), out _, out _);
        Assert.Equal(3, reassembly.PendingCount);
        Assert.Equal(Hj212PacketOutcome.Whole, reassembly.Add(Packet(2, 2, "y=2", qn: "2"), out var whole, out _));
        Assert.Equal("x=2;y=2", whole!.Cp);
    }

    [Fact]
    public void Limits_RefuseWithAReason()
    {
        var reassembly = new Hj212Reassembly(_time) { MaxPending = 2, MaxBytes = 10 };
        reassembly.Add(Packet(2, 1, "a=1", qn: "1"), out _, out _);
        reassembly.Add(Packet(2, 1, "a=1", qn: "2"), out _, out _);
        Assert.Equal(Hj212PacketOutcome.Refused, reassembly.Add(Packet(2, 1, "a=1", qn: "3"), out _, out var reason));
        Assert.Contains("More than 2 split messages", reason, StringComparison.Ordinal);

        Assert.Equal(Hj212PacketOutcome.Refused, reassembly.Add(Packet(2, 2, "b=12345678", qn: "1"), out _, out reason));
        Assert.Contains("larger than 10 characters", reason, StringComparison.Ordinal);

        Assert.Equal(Hj212PacketOutcome.Refused, reassembly.Add(Packet(3, 2, "b=1", qn: "2"), out _, out reason));
        Assert.Contains("PNUM changed from 2 to 3", reason, StringComparison.Ordinal);
        Assert.Equal(0, reassembly.PendingCount);
    }

    [Fact]
    public void AMessageMissingPackets_IsDroppedAfterTheTimeout()
    {
        var reassembly = new Hj212Reassembly(_time) { Timeout = TimeSpan.FromMinutes(1) };
        reassembly.Add(Packet(2, 1, "a=1"), out _, out _);
        _time.Advance(TimeSpan.FromSeconds(59));
        reassembly.Add(Packet(2, 1, "a=1", qn: "other"), out _, out _);
        Assert.Equal(2, reassembly.PendingCount);

        _time.Advance(TimeSpan.FromSeconds(2));
        // The late second packet starts a new message: the first half is gone.
        Assert.Equal(Hj212PacketOutcome.Waiting, reassembly.Add(Packet(2, 2, "b=2"), out _, out _));
        Assert.Equal(1, reassembly.Expired);
        Assert.Equal(2, reassembly.PendingCount);
    }
}
