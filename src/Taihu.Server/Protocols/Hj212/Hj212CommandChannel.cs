using System.Globalization;
using System.Text;
using System.Text.Json;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Platform.Devices;
using Taihu.Platform.Rpc;
using Taihu.Protocols.Hj212;

namespace Taihu.Server.Protocols.Hj212;

/// <summary>What an <see cref="Hj212CommandChannel"/> needs of its connection: the stations on it, a way to write, a way to answer.</summary>
internal interface IHj212CommandWriter
{
    /// <summary>True once the connection is ending: no command is taken then.</summary>
    bool Closing { get; }

    /// <summary>The station of <paramref name="device"/> on this connection; null when it is not identified here or the connection is ending.</summary>
    Hj212ConnectedStation? StationOf(Device device);

    /// <summary>Writes one data segment (framed, with the station's CRC); failures to write are the connection's business.</summary>
    Task SendAsync(string segment, Hj212CrcKind crc);

    /// <summary>Ends the RPC call <paramref name="requestId"/> of <paramref name="station"/> with <paramref name="json"/> (once its session is open).</summary>
    Task ReplyAsync(Hj212ConnectedStation station, int requestId, string json, bool failed);
}

/// <summary>
/// The platform's RPC commands to the HJ 212 stations of one connection (built by <see cref="Hj212Commands"/>) and the
/// stations' answers to them: 9011 (<c>QnRtn</c>: taken or refused), the uploads a read command asks for, and 9012
/// (<c>ExeRtn</c>: the result), matched by the <c>QN</c> the command went out with, which the station echoes. The one
/// owner of the waiting commands (under its lock: commands arrive on other threads, answers on the receive loop); it
/// writes and answers through <see cref="IHj212CommandWriter"/>, so it is tested without a socket.
/// </summary>
internal sealed class Hj212CommandChannel : IDeviceCommandChannel
{
    /// <summary>Commands waiting for a station's answer on one connection.</summary>
    internal const int MaxCommands = 64;

    /// <summary>A command the station never answered is forgotten after this long (its RPC call has timed out long before).</summary>
    internal static readonly TimeSpan CommandLifetime = TimeSpan.FromHours(1);

    private readonly Dictionary<string, Command> _commands;
    private readonly Dictionary<string, Command>.AlternateLookup<ReadOnlySpan<char>> _byQn;
    private readonly IHj212CommandWriter _writer;
    private readonly TimeProvider _time;
    private readonly Lock _gate = new();
    private long _lastQn;
    private bool _closed;

    public Hj212CommandChannel(IHj212CommandWriter writer, TimeProvider time)
    {
        _writer = writer;
        _time = time;
        _commands = new(StringComparer.Ordinal);
        _byQn = _commands.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>Commands sent and not yet answered.</summary>
    public int Pending
    {
        get
        {
            lock (_gate)
            {
                return _commands.Count;
            }
        }
    }

    public bool TrySend(Device device, int requestId, string method, string paramsJson, IDeliveryListener listener)
    {
        ArgumentNullException.ThrowIfNull(device);
        if (_writer.StationOf(device) is not { } station)
        {
            return false;
        }

        var now = _time.GetUtcNow();
        if (!Hj212Commands.TryBuild(method, paramsJson, station.UtcOffset, now, out var cn, out var cp, out var error))
        {
            _ = _writer.ReplyAsync(station, requestId, JsonSerializer.Serialize(new { error }), failed: true);
            return true;
        }

        string qn;
        lock (_gate)
        {
            if (_closed || _writer.Closing)
            {
                return false;
            }

            ForgetOldCommands(now);
            if (_commands.Count >= MaxCommands)
            {
                _ = _writer.ReplyAsync(station, requestId, JsonSerializer.Serialize(new { error = $"More than {MaxCommands} commands are waiting for this station's answers." }), failed: true);
                return true;
            }

            qn = NextQn(now, station.UtcOffset);
            _commands[qn] = new Command(requestId, station, listener, now);
        }

        var flag = (station.Edition << 2) | 1;
        var segment = new Hj212Message(qn, station.St, cn, station.Password, station.Mn, flag, null, null, cp).Format();
        _ = _writer.SendAsync(segment, station.Crc);
        return true;
    }

    /// <summary>The connection ends: no command waits any longer, and none is taken.</summary>
    public void Close()
    {
        lock (_gate)
        {
            _closed = true;
            _commands.Clear();
        }
    }

    /// <summary>The command an upload with <paramref name="qn"/> answers (history data, or what a read command asked for), if one waits.</summary>
    public Command? Waiting(ReadOnlySpan<char> qn)
    {
        lock (_gate)
        {
            // Looked up by the frame's characters: an upload's QN is not made a string.
            return _commands.Count > 0 && _byQn.TryGetValue(qn, out var command) ? command : null;
        }
    }

    /// <summary>9011: <c>QnRtn=1</c> says the station has the command (DELIVERED); anything else refuses it (FAILED).</summary>
    public void RequestAnswered(Hj212ConnectedStation station, string? qn, string cp)
    {
        var command = Find(qn, station, remove: false);
        if (command is null)
        {
            return;
        }

        var answer = Hj212Commands.Item(cp, "QnRtn");
        if (answer == "1")
        {
            command.Delivered();
            return;
        }

        Find(qn, station, remove: true);
        var code = int.TryParse(answer, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0;
        _ = _writer.ReplyAsync(station, command.RequestId, JsonSerializer.Serialize(new { qnRtn = code, error = "The station refused the command: " + Hj212Commands.RequestAnswerText(code) + "." }), failed: true);
    }

    /// <summary>9012: <c>ExeRtn=1</c> ends the call SUCCESSFUL with what the station sent for it; anything else FAILED.</summary>
    public Task ExecutedAsync(Hj212ConnectedStation station, string? qn, string cp)
    {
        var command = Find(qn, station, remove: true);
        if (command is null)
        {
            return Task.CompletedTask;
        }

        // A station that skips 9011 still has had the command.
        command.Delivered();
        var answer = Hj212Commands.Item(cp, "ExeRtn");
        var code = int.TryParse(answer, NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : 0;
        return _writer.ReplyAsync(station, command.RequestId, command.Result(code), failed: code != 1);
    }

    private Command? Find(string? qn, Hj212ConnectedStation station, bool remove)
    {
        if (qn is null)
        {
            return null;
        }

        lock (_gate)
        {
            if (!_commands.TryGetValue(qn, out var command) || command.Station != station)
            {
                return null;
            }

            if (remove)
            {
                _commands.Remove(qn);
            }

            return command;
        }
    }

    private void ForgetOldCommands(DateTimeOffset now)
    {
        List<string>? old = null;
        foreach (var (qn, command) in _commands)
        {
            if (now - command.Sent > CommandLifetime)
            {
                (old ??= []).Add(qn);
            }
        }

        old?.ForEach(qn => _commands.Remove(qn));
    }

    /// <summary>A request number: the station's local time to the millisecond, unique on this connection.</summary>
    private string NextQn(DateTimeOffset now, TimeSpan utcOffset)
    {
        var value = long.Parse(now.ToOffset(utcOffset).ToString("yyyyMMddHHmmssfff", CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);
        _lastQn = value > _lastQn ? value : _lastQn + 1;
        return _lastQn.ToString(CultureInfo.InvariantCulture);
    }

    /// <summary>A command sent to a station and waiting for its answers (by QN).</summary>
    internal sealed class Command(int requestId, Hj212ConnectedStation station, IDeliveryListener listener, DateTimeOffset sent)
    {
        private Dictionary<string, string>? _values;
        private int _delivered;

        public int RequestId { get; } = requestId;

        public Hj212ConnectedStation Station { get; } = station;

        public DateTimeOffset Sent { get; } = sent;

        /// <summary>Data frames the station sent in answer (history requests).</summary>
        public int Frames { get; set; }

        public void Delivered()
        {
            if (Interlocked.Exchange(ref _delivered, 1) == 0)
            {
                listener.OnDelivered(QoS.AtMostOnce);
            }
        }

        /// <summary>Keeps the <c>name=value</c> items of an upload the station sent for this command.</summary>
        public void Collect(string cp)
        {
            foreach (var range in cp.AsSpan().SplitAny(';', ','))
            {
                var item = cp.AsSpan(range);
                var eq = item.IndexOf('=');
                if (eq > 0 && (_values ??= new(StringComparer.Ordinal)).Count < 64)
                {
                    _values[item[..eq].ToString()] = item[(eq + 1)..].ToString();
                }
            }
        }

        /// <summary>The reply: the execution result, the values the station sent, and the data frames counted.</summary>
        public string Result(int exeRtn)
        {
            using var stream = new MemoryStream();
            using (var writer = new Utf8JsonWriter(stream))
            {
                writer.WriteStartObject();
                writer.WriteNumber("exeRtn", exeRtn);
                if (exeRtn != 1)
                {
                    writer.WriteString("error", "The station did not execute the command: " + Hj212Commands.ExecutionResultText(exeRtn) + ".");
                }

                foreach (var (name, value) in _values ?? [])
                {
                    if (name is not ("exeRtn" or "error" or "frames"))
                    {
                        writer.WriteString(name, value);
                    }
                }

                if (Frames > 0 || _values is null)
                {
                    writer.WriteNumber("frames", Frames);
                }

                writer.WriteEndObject();
            }

            return Encoding.UTF8.GetString(stream.ToArray());
        }
    }
}
