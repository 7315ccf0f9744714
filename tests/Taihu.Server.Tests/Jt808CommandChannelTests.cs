using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;
using Taihu.Protocols.Jt808;
using Taihu.Server.Protocols.Jt808;

namespace Taihu.Server.Tests;

/// <summary>
/// RPC to a JT/T 808 terminal without a socket: the commands written for each method, the terminal's answers matched
/// by serial number to their calls, answers that come before the session opens kept for it, and the refusals.
/// </summary>
public sealed class Jt808CommandChannelTests
{
    // go-jt808's batch 0x0704 (cuteLittleDevil/go-jt808, protocol/model/parse_test.go): its 2013 header gives the terminal's form.
    private const string BatchFrame =
        "7e0704003f0123456789010000000200001c000004000000080007203b7d0202633df7013800030063241001235959001c000004000000080007203b7d0202633df7013800030063241001235959b67e";

    private static readonly Device Bus = new(1, Guid.NewGuid(), Guid.NewGuid(), "bus", "bus", null, Guid.NewGuid(), null, false, null, 0);

    private readonly Writer _writer = new();
    private readonly List<(int RequestId, string Json, bool Failed)> _answers = [];
    private readonly Jt808CommandChannel _channel;

    public Jt808CommandChannelTests()
    {
        _channel = new Jt808CommandChannel(_writer, Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
    }

    private void Open() => _channel.Opened((id, json, failed) =>
    {
        _answers.Add((id, json, failed));
        return Task.CompletedTask;
    });

    [Fact]
    public void SendText_IsWrittenAs0x8300_Delivered_AndTheGeneralReplyWithItsSerialEndsTheCall()
    {
        Open();
        var delivered = new Delivery();
        Assert.True(_channel.TrySend(Bus, 7, "sendText", "{\"text\":\"Hello\"}", delivered));
        var (messageId, serial, body) = Assert.Single(_writer.Frames);
        Assert.Equal(Jt808MessageIds.TextMessage, messageId);
        Assert.Equal(0x0C, body[0]);
        Assert.Equal(1, delivered.Count);

        // A reply to another serial answers nothing; the right one ends the call, once.
        _channel.GeneralReply(new Jt808GeneralReply((ushort)(serial + 1), Jt808MessageIds.TextMessage, Jt808Results.Ok));
        Assert.Empty(_answers);
        _channel.GeneralReply(new Jt808GeneralReply(serial, Jt808MessageIds.TextMessage, Jt808Results.Ok));
        _channel.GeneralReply(new Jt808GeneralReply(serial, Jt808MessageIds.TextMessage, Jt808Results.Ok));
        Assert.Equal([(7, "{\"result\":0}", false)], _answers);
        Assert.Equal(0, _channel.Pending);
    }

    [Fact]
    public void SetParameters_RefusedByTheTerminal_FailsTheCall()
    {
        Open();
        Assert.True(_channel.TrySend(Bus, 8, "setParameters", "{\"heartbeatInterval\":30}", new Delivery()));
        var (messageId, serial, _) = Assert.Single(_writer.Frames);
        Assert.Equal(Jt808MessageIds.SetParameters, messageId);
        _channel.GeneralReply(new Jt808GeneralReply(serial, messageId, Jt808Results.Failure));
        Assert.Equal([(8, "{\"result\":1}", true)], _answers);
    }

    [Fact]
    public void QueryLocation_IsAnsweredByTheLocationReply_AsItsPoints()
    {
        Open();
        Assert.True(_channel.TrySend(Bus, 9, "queryLocation", "{}", new Delivery()));
        var (messageId, serial, body) = Assert.Single(_writer.Frames);
        Assert.Equal((Jt808MessageIds.QueryLocation, 0), (messageId, body.Length));
        _channel.LocationReply(serial, [new TelemetryPoint("latitude", 1000, KvValue.Of(31.5)), new TelemetryPoint("speed", 1000, KvValue.Of(12L))]);
        Assert.Equal([(9, "{\"ts\":1000,\"latitude\":31.5,\"speed\":12}", false)], _answers);
    }

    [Theory]
    [InlineData("reboot", "{}", "queryLocation, setParameters and sendText")]
    [InlineData("setParameters", "[1", "setParameters takes an object")]
    [InlineData("sendText", "{\"flags\":1}", "sendText takes")]
    public void UnknownMethodsAndBadParameters_FailAtOnce_WithoutAFrame(string method, string parameters, string error)
    {
        Open();
        var delivered = new Delivery();
        Assert.True(_channel.TrySend(Bus, 10, method, parameters, delivered));
        Assert.Empty(_writer.Frames);
        Assert.Equal(0, delivered.Count);
        var (id, json, failed) = Assert.Single(_answers);
        Assert.Equal((10, true), (id, failed));
        Assert.Contains(error, json, StringComparison.Ordinal);
    }

    [Fact]
    public void AnswersBeforeTheSessionOpens_WaitForIt()
    {
        Assert.True(_channel.TrySend(Bus, 11, "reboot", "{}", new Delivery()));
        Assert.Empty(_answers);
        Open();
        Assert.Equal(11, Assert.Single(_answers).RequestId);
    }

    [Fact]
    public void ClosingConnection_OrNoFrameYet_TakesNoCommand()
    {
        Open();
        _writer.Form = null;
        Assert.False(_channel.TrySend(Bus, 12, "queryLocation", "{}", new Delivery()));
        _writer.Form = Writer.TerminalForm();
        _writer.Closing = true;
        Assert.False(_channel.TrySend(Bus, 13, "queryLocation", "{}", new Delivery()));
        Assert.Empty(_writer.Frames);
    }

    [Fact]
    public void PendingCommands_AreBounded()
    {
        Open();
        for (var i = 0; i <= Jt808CommandChannel.MaxPendingCommands; i++)
        {
            Assert.True(_channel.TrySend(Bus, i, "queryLocation", "{}", new Delivery()));
        }

        Assert.Equal(1, _channel.Pending);
    }

    private sealed class Delivery : IDeliveryListener
    {
        public int Count { get; private set; }

        public void OnDelivered(QoS qos) => Count++;
    }

    private sealed class Writer : IJt808CommandWriter
    {
        private ushort _serial;

        public Jt808HeaderForm? Form { get; set; } = TerminalForm();

        public bool Closing { get; set; }

        public List<(ushort MessageId, ushort Serial, byte[] Body)> Frames { get; } = [];

        public (Jt808HeaderForm Form, Jt808Version Version)? Terminal => Form is { } form ? (form, Jt808Version.V2013) : null;

        public ushort NextSerial() => ++_serial;

        public ValueTask<bool> WriteAsync(Jt808HeaderForm form, ushort messageId, ushort serial, byte[] body, int length)
        {
            Frames.Add((messageId, serial, body.AsSpan(0, length).ToArray()));
            return ValueTask.FromResult(true);
        }

        public static Jt808HeaderForm TerminalForm()
        {
            var message = new byte[Jt808Framing.MaxUnescapedLength];
            Assert.Equal(Jt808ReadStatus.Frame, Jt808Framing.TryRead(Convert.FromHexString(BatchFrame), message, out var length, out _, out _));
            Assert.True(Jt808Header.TryRead(message.AsSpan(0, length), out var header, out _));
            return new Jt808HeaderForm(header!);
        }
    }
}
