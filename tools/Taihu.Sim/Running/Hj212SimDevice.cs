using System.Globalization;
using System.Text;
using System.Text.Json;
using Taihu.Protocols.Hj212;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>
/// An HJ 212-2017 monitoring station on one long TCP connection (the codec of <c>Taihu.Protocols</c>): each report is
/// a data upload whose keys are the fleet's (<c>w01018-Avg</c>, <c>a34004-Rtd</c>, grouped by pollutant), at its
/// <c>DataTime</c> in China Standard Time, with Flag asking for an answer; it counts as acknowledged when the
/// platform's data answer (9014) with its QN comes back. Keys ending in <c>-Rtd</c> make real-time data (CN 2011),
/// others minute data (2051), or hour (2061) and day data (2031) at those intervals. It answers the platform's
/// commands as a station does: 9011 (<c>QnRtn=1</c>), the data a read command asks for (<c>SystemTime</c>,
/// <c>RtdInterval</c>, <c>MinInterval</c>), and 9012 (<c>ExeRtn=1</c>). <c>DataTime</c> has whole seconds: two
/// uploads within one second are one point, which the run counts so.
/// </summary>
public sealed class Hj212SimDevice(string host, int port, string mn, string password, FleetDefinition fleet, ScenarioScaling scaling, Random random)
    : TcpSimDevice(host, port, fleet, scaling, random)
{
    private static readonly TimeSpan ChinaStandardTime = TimeSpan.FromHours(8);
    private readonly string _cn = DataCommand(fleet);
    private readonly string _st = SystemCode(fleet);
    private readonly Lock _stamp = new();
    private long _lastQn;

    /// <summary>The data command the fleet's uploads are: 2011 real-time for -Rtd keys, else by the interval 2051 minute, 2061 hour or 2031 day data.</summary>
    internal static string DataCommand(FleetDefinition fleet)
    {
        foreach (var key in fleet.Telemetry.Keys)
        {
            if (key.EndsWith("-Rtd", StringComparison.Ordinal) || key.EndsWith("-ZsRtd", StringComparison.Ordinal))
            {
                return "2011";
            }
        }

        return fleet.Interval >= TimeSpan.FromDays(1) ? "2031" : fleet.Interval >= TimeSpan.FromHours(1) ? "2061" : "2051";
    }

    /// <summary>HJ 212's system code: surface water (21) or ambient air (22) quality for minute data; for real-time data, a source's wastewater (32) or exhaust gas (31).</summary>
    private static string SystemCode(FleetDefinition fleet)
    {
        var water = false;
        foreach (var key in fleet.Telemetry.Keys)
        {
            water = key.StartsWith('w');
            break;
        }

        return DataCommand(fleet) == "2011" ? (water ? "32" : "31") : (water ? "21" : "22");
    }

    /// <summary>
    /// As a data collector does when it starts: it uploads its restart time (CN 2081), which identifies the station
    /// on the new connection, so that the platform's commands reach it before its first data.
    /// </summary>
    protected override async Task HandshakeAsync(CancellationToken cancellationToken)
    {
        var answer = await RestartTimeAsync(cancellationToken);
        if (!answer.Acknowledged)
        {
            throw new InvalidOperationException($"The server did not take station {mn}'s restart time: {answer.Outcome}.");
        }
    }

    private Task<SendResult> RestartTimeAsync(CancellationToken cancellationToken)
    {
        var now = DateTimeOffset.UtcNow;
        var qn = QnText(NextQn(now.ToUnixTimeMilliseconds()));
        var local = now.ToOffset(ChinaStandardTime).ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture);
        var restart = new Hj212Message(qn, _st, "2081", password, mn, 5, null, null, $"DataTime={local};RestartTime={local}");
        return SendAndWaitAsync(qn, Hj212Framing.Encode(restart.Format()), cancellationToken);
    }

    /// <summary>
    /// A data upload whose CRC is wrong. HJ 212 has no answer for it: the platform drops it (and closes a connection
    /// after too many in a row). Its restart time sent after it, and answered, shows that it was read and dropped.
    /// </summary>
    public override Task<SendResult> SendMalformedAsync(CancellationToken cancellationToken)
    {
        var now = DateTimeOffset.UtcNow;
        var qn = QnText(NextQn(now.ToUnixTimeMilliseconds()));
        var local = now.ToOffset(ChinaStandardTime).ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture);
        var frame = Hj212Framing.Encode(new Hj212Message(qn, _st, _cn, password, mn, 5, null, null, $"DataTime={local}").Format());
        var crc = frame.Length - 6; // ##nnnn...CRC4\r\n: the CRC's first hex digit
        frame[crc] = frame[crc] == (byte)'0' ? (byte)'1' : (byte)'0';
        return SendUnansweredAsync(qn, frame, RestartTimeAsync, "dropped without an answer (HJ 212 has none for a bad CRC); the connection kept", cancellationToken);
    }

    public override async Task<SendResult> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken)
    {
        if (!TryReadReport(payload, out var ts, out var document))
        {
            return new SendResult(false, "not sent: an HJ 212 station cannot carry it");
        }

        string qn;
        string segment;
        using (document)
        {
            qn = QnText(NextQn(ts));
            segment = Segment(qn, _st, _cn, password, mn, document!.RootElement.GetProperty("values"), DateTimeOffset.FromUnixTimeMilliseconds(ts));
        }

        return await SendAndWaitAsync(qn, Hj212Framing.Encode(segment), cancellationToken);
    }

    /// <summary>The upload's QN: its time, or a millisecond after the last when within it (the answer is matched by it).</summary>
    private long NextQn(long ts)
    {
        lock (_stamp)
        {
            _lastQn = Math.Max(ts, _lastQn + 1);
            return _lastQn;
        }
    }

    private static string QnText(long ms) => DateTimeOffset.FromUnixTimeMilliseconds(ms).ToOffset(ChinaStandardTime).ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture);

    /// <summary>
    /// <c>QN=..;ST=..;CN=..;PW=..;MN=..;Flag=5;CP=&amp;&amp;DataTime=..;w01018-Avg=..,w01018-Flag=N;...&amp;&amp;</c>:
    /// the items of one pollutant together, separated by commas, pollutants by semicolons.
    /// </summary>
    internal static string Segment(string qn, string st, string cn, string pw, string mn, JsonElement values, DateTimeOffset dataTime)
    {
        var cp = new StringBuilder(256);
        cp.Append("DataTime=").Append(dataTime.ToOffset(ChinaStandardTime).ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture));
        var code = "";
        foreach (var item in values.EnumerateObject())
        {
            var dash = item.Name.IndexOf('-', StringComparison.Ordinal);
            var itemCode = dash > 0 ? item.Name[..dash] : item.Name;
            cp.Append(itemCode == code ? ',' : ';');
            code = itemCode;
            cp.Append(item.Name).Append('=');
            switch (item.Value.ValueKind)
            {
                case JsonValueKind.Number:
                    cp.Append(item.Value.GetDouble().ToString("0.######", CultureInfo.InvariantCulture));
                    break;
                case JsonValueKind.True or JsonValueKind.False:
                    cp.Append(item.Value.GetBoolean() ? '1' : '0');
                    break;
                default:
                    cp.Append(item.Value.GetString());
                    break;
            }
        }

        // Flag 5: the 2017 edition (bit 2) and an answer asked for (bit 0).
        return new Hj212Message(qn, st, cn, pw, mn, 5, null, null, cp.ToString()).Format();
    }

    protected override int ReadFrames(ReadOnlySpan<byte> buffer)
    {
        var total = 0;
        while (true)
        {
            var status = Hj212Framing.TryRead(buffer[total..], Hj212Framing.MaxDataLength, Hj212CrcKind.Standard, out var segment, out var consumed, out _);
            if (status == Hj212ReadStatus.NeedMore || consumed == 0)
            {
                return total;
            }

            if (status == Hj212ReadStatus.Frame && Hj212Message.TryParse(Encoding.ASCII.GetString(buffer[total..][segment]), out var message, out _) && message is not null)
            {
                Handle(message);
            }

            total += consumed;
        }
    }

    private void Handle(Hj212Message message)
    {
        switch (message.Cn)
        {
            case "9014":
                Answer(message.Qn ?? "", SendResult.Ok);
                break;
            case "1011" or "1012" or "1061" or "1062" or "1063" or "1064" or "2051" or "2061" or "2031":
                _ = ExecuteAsync(message);
                break;
        }
    }

    /// <summary>A command: taken (9011), its data for a read command, done (9012).</summary>
    private async Task ExecuteAsync(Hj212Message command)
    {
        try
        {
            if (!await WriteAsync(Hj212Framing.Encode(Hj212Replies.RequestAnswer(command, 1).Format()), Stopping))
            {
                return;
            }

            var data = command.Cn switch
            {
                "1011" => "SystemTime=" + DateTimeOffset.UtcNow.ToOffset(ChinaStandardTime).ToString("yyyyMMddHHmmss", CultureInfo.InvariantCulture),
                "1061" => "RtdInterval=30",
                "1063" => "MinInterval=1",
                _ => null,
            };
            if (data is not null)
            {
                var upload = new Hj212Message(command.Qn, _st, command.Cn, password, mn, 4, null, null, data);
                await WriteAsync(Hj212Framing.Encode(upload.Format()), Stopping);
            }

            if (await WriteAsync(Hj212Framing.Encode(Hj212Replies.Result(command, 1).Format()), Stopping))
            {
                CountRpcAnswered();
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
        {
            // The run is over.
        }
    }
}
