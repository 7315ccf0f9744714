using Microsoft.Extensions.Time.Testing;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Platform.Devices;
using Taihu.Protocols.Hj212;
using Taihu.Server.Protocols.Hj212;

namespace Taihu.Server.Tests;

/// <summary>
/// RPC to HJ 212 stations without a socket: the command segment written for a call, the station's 9011 and 9012
/// answers matched by QN to their calls (and to the station they went to), what a read command's upload brings
/// collected into the result, and the refusals and bounds.
/// </summary>
public sealed class Hj212CommandChannelTests
{
    private static readonly Device StationDevice = new(1, Guid.NewGuid(), Guid.NewGuid(), "station", "station", null, Guid.NewGuid(), null, false, null, 0);
    private static readonly Device OtherDevice = new(2, Guid.NewGuid(), Guid.NewGuid(), "other", "other", null, Guid.NewGuid(), null, false, null, 0);

    // 2026-12-04 08:30:15.250 at the station (UTC+8).
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 4, 0, 30, 15, 250, TimeSpan.Zero));
    private readonly Writer _writer = new();
    private readonly Hj212CommandChannel _channel;
    private readonly Hj212ConnectedStation _station;
    private readonly Hj212ConnectedStation _other;

    public Hj212CommandChannelTests()
    {
        _channel = new Hj212CommandChannel(_writer, _time);
        _station = _writer.Add(StationDevice, "010000A8900016F000169DC0");
        _other = _writer.Add(OtherDevice, "010000A8900016F000169DC1");
    }

    [Fact]
    public void GetTime_IsWrittenAsCn1011_WithTheStationsFields_AndAnsweredBy9011Then9012()
    {
        var delivery = new Delivery();
        Assert.True(_channel.TrySend(StationDevice, 7, "getTime", "{}", delivery));
        var (segment, crc) = Assert.Single(_writer.Segments);
        Assert.Equal(Hj212CrcKind.Standard, crc);
        Assert.True(Hj212Message.TryParse(segment, out var command, out var error), error);
        // QN is the station's local time to the millisecond; Flag asks for an answer, in the station's edition.
        Assert.Equal(("20261204083015250", "22", "1011", "123456", _station.Mn, 5), (command!.Qn, command.St, command.Cn, command.Pw, command.Mn, command.Flag));

        _channel.RequestAnswered(_station, command.Qn, "QnRtn=1");
        Assert.Equal(1, delivery.Count);
        Assert.Empty(_writer.Answers);

        // The station's upload for the command is collected into the result, then 9012 ends the call.
        _channel.Waiting(command.Qn)!.Collect("SystemTime=20261204083016");
        _channel.ExecutedAsync(_station, command.Qn, "ExeRtn=1");
        Assert.Equal([(_station, 7, "{\"exeRtn\":1,\"SystemTime\":\"20261204083016\"}", false)], _writer.Answers);
        Assert.Equal((1, 0), (delivery.Count, _channel.Pending));
    }

    [Fact]
    public void ARefusingRequestAnswer_FailsTheCall_InPlainEnglish()
    {
        Assert.True(_channel.TrySend(StationDevice, 8, "setRealtimeInterval", "{\"seconds\":60}", new Delivery()));
        Assert.True(Hj212Message.TryParse(Assert.Single(_writer.Segments).Segment, out var command, out _));
        _channel.RequestAnswered(_station, command!.Qn, "QnRtn=3");
        var (_, id, json, failed) = Assert.Single(_writer.Answers);
        Assert.Equal((8, true), (id, failed));
        Assert.Contains("\"qnRtn\":3", json, StringComparison.Ordinal);
        Assert.Contains("The station refused the command", json, StringComparison.Ordinal);
        Assert.Equal(0, _channel.Pending);
    }

    [Fact]
    public void AnswersWithAnotherQn_OrFromAnotherStation_EndNothing()
    {
        var delivery = new Delivery();
        Assert.True(_channel.TrySend(StationDevice, 9, "getTime", "{}", delivery));
        Assert.True(Hj212Message.TryParse(Assert.Single(_writer.Segments).Segment, out var command, out _));
        _channel.RequestAnswered(_other, command!.Qn, "QnRtn=1");
        _channel.ExecutedAsync(_other, command.Qn, "ExeRtn=1");
        _channel.ExecutedAsync(_station, "20261204083015251", "ExeRtn=1");
        _channel.ExecutedAsync(_station, null, "ExeRtn=1");
        Assert.Equal((0, 1), (delivery.Count, _channel.Pending));
        Assert.Empty(_writer.Answers);

        // A station that skips 9011 has still had the command; a failed execution fails the call.
        _channel.ExecutedAsync(_station, command.Qn, "ExeRtn=100");
        Assert.Equal(1, delivery.Count);
        var (_, id, json, failed) = Assert.Single(_writer.Answers);
        Assert.Equal((9, true), (id, failed));
        Assert.Contains("there is no data", json, StringComparison.Ordinal);
    }

    [Fact]
    public void CommandsInTheSameMillisecond_GetDifferentQns()
    {
        Assert.True(_channel.TrySend(StationDevice, 1, "getTime", "{}", new Delivery()));
        Assert.True(_channel.TrySend(StationDevice, 2, "getTime", "{}", new Delivery()));
        Assert.True(Hj212Message.TryParse(_writer.Segments[0].Segment, out var first, out _));
        Assert.True(Hj212Message.TryParse(_writer.Segments[1].Segment, out var second, out _));
        Assert.Equal(("20261204083015250", "20261204083015251"), (first!.Qn, second!.Qn));
        Assert.Equal(2, _channel.Pending);
    }

    [Theory]
    [InlineData("reboot", "{}", "HJ 212 stations know the methods")]
    [InlineData("setRealtimeInterval", "{\"seconds\":1}", "from 30 to 3600")]
    public void UnknownMethodsAndBadParameters_FailAtOnce_WithoutASegment(string method, string parameters, string error)
    {
        var delivery = new Delivery();
        Assert.True(_channel.TrySend(StationDevice, 10, method, parameters, delivery));
        Assert.Empty(_writer.Segments);
        var (station, id, json, failed) = Assert.Single(_writer.Answers);
        Assert.Equal((_station, 10, true, 0), (station, id, failed, delivery.Count));
        Assert.Contains(error, json, StringComparison.Ordinal);
    }

    [Fact]
    public void WaitingCommands_AreBounded_AndForgottenAfterTheirLifetime()
    {
        for (var i = 0; i < Hj212CommandChannel.MaxCommands; i++)
        {
            Assert.True(_channel.TrySend(StationDevice, i, "getTime", "{}", new Delivery()));
        }

        Assert.True(_channel.TrySend(StationDevice, 99, "getTime", "{}", new Delivery()));
        var (_, id, json, failed) = Assert.Single(_writer.Answers);
        Assert.Equal((99, true), (id, failed));
        Assert.Contains("More than 64 commands", json, StringComparison.Ordinal);
        Assert.Equal(Hj212CommandChannel.MaxCommands, _writer.Segments.Count);

        _time.Advance(Hj212CommandChannel.CommandLifetime + TimeSpan.FromSeconds(1));
        Assert.True(_channel.TrySend(StationDevice, 100, "getTime", "{}", new Delivery()));
        Assert.Equal(1, _channel.Pending);
    }

    [Fact]
    public void AStationNotOnTheConnection_OrAClosedChannel_TakesNoCommand()
    {
        var unknown = new Device(3, Guid.NewGuid(), Guid.NewGuid(), "x", "x", null, Guid.NewGuid(), null, false, null, 0);
        Assert.False(_channel.TrySend(unknown, 1, "getTime", "{}", new Delivery()));
        Assert.True(_channel.TrySend(StationDevice, 2, "getTime", "{}", new Delivery()));
        _channel.Close();
        Assert.Equal(0, _channel.Pending);
        Assert.False(_channel.TrySend(StationDevice, 3, "getTime", "{}", new Delivery()));
        Assert.Single(_writer.Segments);
    }

    private sealed class Delivery : IDeliveryListener
    {
        public int Count { get; private set; }

        public void OnDelivered(QoS qos) => Count++;
    }

    private sealed class Writer : IHj212CommandWriter
    {
        private readonly Dictionary<Guid, Hj212ConnectedStation> _stations = [];

        public bool Closing { get; set; }

        public List<(string Segment, Hj212CrcKind Crc)> Segments { get; } = [];

        public List<(Hj212ConnectedStation Station, int RequestId, string Json, bool Failed)> Answers { get; } = [];

        public Hj212ConnectedStation Add(Device device, string mn)
        {
            var station = new Hj212ConnectedStation(mn, device, Hj212CrcKind.Standard, Hj212Data.ChinaStandardTime, "22");
            station.SetPassword("123456");
            _stations[device.Id] = station;
            return station;
        }

        public Hj212ConnectedStation? StationOf(Device device) => _stations.GetValueOrDefault(device.Id);

        public Task SendAsync(string segment, Hj212CrcKind crc)
        {
            Segments.Add((segment, crc));
            return Task.CompletedTask;
        }

        public Task ReplyAsync(Hj212ConnectedStation station, int requestId, string json, bool failed)
        {
            Answers.Add((station, requestId, json, failed));
            return Task.CompletedTask;
        }
    }
}
