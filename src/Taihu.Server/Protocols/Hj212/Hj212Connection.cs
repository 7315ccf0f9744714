using System.Buffers;
using System.IO.Pipelines;
using System.Text;
using Microsoft.AspNetCore.Connections;
using Microsoft.Extensions.Logging;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;
using Taihu.Protocols.Hj212;

namespace Taihu.Server.Protocols.Hj212;

/// <summary>
/// One TCP connection of HJ 212 stations: frames in, the platform's device calls out, answers back.
/// </summary>
/// <remarks>
/// One receive loop owns the connection's state (the stations it identified, split messages in the making) and
/// handles one frame at a time: a data upload is acknowledged (9014, when its Flag asks) only after its points are
/// committed, so the next frame waits for that commit. A connection usually carries one station (a data collector,
/// one <c>MN</c>); a concentrator that forwards several <c>MN</c>s over one connection is served too, each station
/// identified on its first frame and its password compared with the verified bytes on every later one.
/// RPC commands arrive on other threads and are the business of the connection's <see cref="Hj212CommandChannel"/>
/// (the commands waiting for answers, by the <c>QN</c> the station echoes); every write to the socket goes through
/// one send gate.
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The send gate is a SemaphoreSlim without a wait handle (nothing to release), and RPC sends may still use it after the receive loop ends.")]
internal sealed partial class Hj212Connection : IHj212CommandWriter
{
    private const string Protocol = "hj212";

    /// <summary>Stations one connection may speak for (a concentrator's handful; more is not a station).</summary>
    private const int MaxStations = 16;

    /// <summary>Bytes copied into one span when a frame spans pipe segments: the largest frame with room for line ends.</summary>
    private const int CopyLimit = 6 + Hj212Framing.MaxDataLength + 4 + 64;

    private readonly ConnectionContext _connection;
    private readonly Hj212Stations _stations;
    private readonly ProtocolDevices _devices;
    private readonly Hj212Options _options;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly Hj212Reassembly _reassembly;
    private readonly Dictionary<string, Hj212ConnectedStation> _byMn = new(StringComparer.Ordinal);
    private readonly Dictionary<Guid, Hj212ConnectedStation> _byDevice = [];
    private readonly Hj212CommandChannel _commands;
    private readonly Lock _gate = new();
    private readonly SemaphoreSlim _sendGate = new(1, 1);
    private readonly List<Hj212Point> _parsed = [];
    private readonly Hj212NameCache _names = new();
    private readonly Hj212Frame _frame = new();
    private readonly char[] _answer = new char[Hj212Replies.MaxDataAnswerLength];

    // The points of the frame being handled, when Parse read them from the frame (see Parse).
    private bool _preParsed;
    private bool _preParsedOk;
    private long _preParsedTs;
    private string? _preParsedProblem;
    private readonly List<TelemetryPoint> _points = [];
    private byte[]? _copy;
    private int _badInARow;
    private volatile bool _closing;

    public Hj212Connection(ConnectionContext connection, Hj212Stations stations, Hj212Options options, TimeProvider time, ILogger logger)
    {
        _connection = connection;
        _stations = stations;
        _devices = stations.Devices;
        _options = options;
        _time = time;
        _logger = logger;
        _reassembly = new Hj212Reassembly(time);
        _commands = new Hj212CommandChannel(this, time);
    }

    /// <summary>Runs the receive loop until the station closes, a refusal closes the connection, or it idles out.</summary>
    public async Task RunAsync()
    {
        var input = _connection.Transport.Input;
        using var idle = new CancellationTokenSource(_options.IdleTimeout, _time);
        string? closeReason = null;
        try
        {
            while (closeReason is null)
            {
                ReadResult result;
                try
                {
                    result = await input.ReadAsync(idle.Token);
                }
                catch (OperationCanceledException) when (idle.IsCancellationRequested)
                {
                    _devices.CountRejected(Protocol, "timeout");
                    closeReason = "no frame within Hj212:IdleTimeout";
                    break;
                }

                var buffer = result.Buffer;
                while (closeReason is null)
                {
                    var status = TakeFrame(ref buffer, out var modbusCrc, out var refusal);
                    if (status == Hj212ReadStatus.NeedMore)
                    {
                        break;
                    }

                    if (status == Hj212ReadStatus.Invalid)
                    {
                        _devices.CountRejected(Protocol, refusal!);
                        if (++_badInARow >= _options.MaxBadFramesInARow)
                        {
                            closeReason = $"{_badInARow} bad frames in a row";
                        }

                        continue;
                    }

                    closeReason = await HandleAsync(_frame, modbusCrc);
                    if (closeReason is null)
                    {
                        // A valid frame keeps the connection alive.
                        idle.CancelAfter(_options.IdleTimeout);
                    }
                }

                input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception ex) when (ex is ConnectionResetException or IOException or ConnectionAbortedException or OperationCanceledException)
        {
            // The station went away or the server is stopping.
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            LogFailed(_logger, _connection.RemoteEndPoint, ex);
        }
        finally
        {
            if (closeReason is not null)
            {
                LogClosing(_logger, _connection.RemoteEndPoint, closeReason);
            }

            Close();
        }
    }

    private void Close()
    {
        List<Hj212ConnectedStation> stations;
        lock (_gate)
        {
            _closing = true;
            stations = [.. _byMn.Values];
        }

        _commands.Close();

        foreach (var station in stations)
        {
            _stations.Connections.Remove(station.Device, _connection);
            station.Session?.Dispose();
        }

        if (_copy is not null)
        {
            ArrayPool<byte>.Shared.Return(_copy);
            _copy = null;
        }
    }

    // ---- frames ----

    /// <summary>Takes the next frame from <paramref name="buffer"/> (advancing it past what was used), without awaiting.</summary>
    private Hj212ReadStatus TakeFrame(ref ReadOnlySequence<byte> buffer, out bool modbusCrc, out string? refusal)
    {
        modbusCrc = false;
        refusal = null;
        if (buffer.IsEmpty)
        {
            return Hj212ReadStatus.NeedMore;
        }

        ReadOnlySpan<byte> span;
        if (buffer.IsSingleSegment)
        {
            span = buffer.FirstSpan;
        }
        else
        {
            var length = (int)Math.Min(buffer.Length, CopyLimit);
            _copy ??= ArrayPool<byte>.Shared.Rent(CopyLimit);
            buffer.Slice(0, length).CopyTo(_copy);
            span = _copy.AsSpan(0, length);
        }

        var status = Hj212Framing.TryRead(span, _options.MaxDataLength, Hj212CrcKind.Standard, out var segment, out var consumed, out var error);
        if (status == Hj212ReadStatus.Invalid && error == Hj212FrameError.CrcMismatch)
        {
            // Modbus CRC: taken here, and refused later unless the station's device is set to it.
            status = Hj212Framing.TryRead(span, _options.MaxDataLength, Hj212CrcKind.Modbus, out segment, out consumed, out _);
            modbusCrc = status == Hj212ReadStatus.Frame;
            if (!modbusCrc)
            {
                status = Hj212ReadStatus.Invalid;
            }
        }

        if (status == Hj212ReadStatus.NeedMore)
        {
            buffer = buffer.Slice(consumed);
            return status;
        }

        if (status == Hj212ReadStatus.Invalid)
        {
            buffer = buffer.Slice(consumed);
            refusal = error switch
            {
                Hj212FrameError.BadLength => "bad_length",
                Hj212FrameError.TooLong => "too_long",
                Hj212FrameError.BadCrcText or Hj212FrameError.CrcMismatch => "bad_crc",
                _ => "garbage",
            };
            return status;
        }

        var bytes = span[segment];
        var parsed = Parse(bytes, out refusal);
        buffer = buffer.Slice(consumed);
        if (!parsed)
        {
            return Hj212ReadStatus.Invalid;
        }

        return Hj212ReadStatus.Frame;
    }

    /// <summary>
    /// The frame's data segment, read in place into <see cref="_frame"/>. A data upload that is not one packet of
    /// several has its points read here too, from the frame's characters, into <see cref="_parsed"/> (with the
    /// station's zone applied later), so that its CP text is never copied; other messages keep their CP text.
    /// Nothing is allocated for a station's data upload: its names come from <see cref="_names"/> and its QN is
    /// copied into the frame's own buffer.
    /// </summary>
    private bool Parse(ReadOnlySpan<byte> bytes, out string? refusal)
    {
        _preParsed = false;
        char[]? rented = null;
        var chars = bytes.Length <= 1024 ? stackalloc char[bytes.Length] : (rented = ArrayPool<char>.Shared.Rent(bytes.Length)).AsSpan(0, bytes.Length);
        try
        {
            // Latin-1: one char per byte, whatever a station puts in its text fields.
            Encoding.Latin1.GetChars(bytes, chars);
            if (!Hj212Segment.TryParse(chars, out var segment, out _) || segment.Mn.IsEmpty || segment.Cn.IsEmpty)
            {
                refusal = "bad_segment";
                return false;
            }

            refusal = null;
            var pointsHere = !segment.IsSplit && Hj212Data.IsData(_names.Get(segment.Cn));
            _frame.Set(segment, _names, pointsHere ? "" : segment.Cp.ToString());
            if (pointsHere)
            {
                _parsed.Clear();
                _preParsed = true;
                _preParsedOk = Hj212Data.TryRead(segment.Cp, TimeSpan.Zero, _parsed, _names, out _preParsedTs, out _preParsedProblem);
            }

            return true;
        }
        finally
        {
            if (rented is not null)
            {
                ArrayPool<char>.Shared.Return(rented);
            }
        }
    }

    /// <summary>Handles one frame; returns why the connection must close, or null.</summary>
    private async ValueTask<string?> HandleAsync(Hj212Frame frame, bool modbusCrc)
    {
        var station = await IdentifyAsync(frame);
        if (station is null)
        {
            return "station refused";
        }

        if (modbusCrc && station.Crc != Hj212CrcKind.Modbus)
        {
            _devices.CountRejected(Protocol, "bad_crc");
            return ++_badInARow >= _options.MaxBadFramesInARow ? $"{_badInARow} bad frames in a row" : null;
        }

        _badInARow = 0;
        _devices.CountFrame(Protocol);
        station.St = frame.St ?? station.St;
        station.Edition = frame.Edition;
        var expired = _reassembly.Expired;
        Hj212Message? whole = null;
        string? splitProblem = null;
        var outcome = Hj212PacketOutcome.Whole;
        if (frame.IsSplit)
        {
            outcome = _reassembly.Add(frame.ToMessage(), out whole, out splitProblem);
        }
        else
        {
            _reassembly.DropExpired();
        }
        for (var i = expired; i < _reassembly.Expired; i++)
        {
            // A split message whose packets did not all come within five minutes: dropped, never answered.
            _devices.CountRejected(Protocol, "split_timeout");
        }

        if (outcome == Hj212PacketOutcome.Refused)
        {
            _devices.CountRejected(Protocol, "bad_split");
            LogSplitRefused(_logger, station.Mn, splitProblem!);
            return null;
        }

        if (outcome == Hj212PacketOutcome.Waiting)
        {
            // The standard answers every packet of a split message whose Flag asks for it (a station waits for each
            // answer before it sends the next packet): this one is held until the last arrives; the packet that
            // completes the message is answered once the whole is stored.
            station.Session!.Activity();
            await AnswerIfAskedAsync(station, frame);
            return null;
        }

        if (whole is not null)
        {
            // The last packet of a split message: the whole is handled as one frame, answered with its fields.
            frame.Set(whole);
        }

        switch (frame.Cn)
        {
            case "9011":
                station.Session!.Activity();
                _commands.RequestAnswered(station, frame.QnText(), frame.Cp);
                break;
            case "9012":
                station.Session!.Activity();
                await _commands.ExecutedAsync(station, frame.QnText(), frame.Cp);
                break;
            case "9013":
            case "9014":
                // Answers to the platform's notifications and data: nothing to store.
                station.Session!.Activity();
                break;
            default:
                await UploadAsync(station, frame);
                break;
        }

        return null;
    }

    /// <summary>The station of the frame's MN: identified on its first frame, its PW compared with the verified one after that.</summary>
    private async ValueTask<Hj212ConnectedStation?> IdentifyAsync(Hj212Frame frame)
    {
        var mn = frame.Mn;
        var pw = frame.Pw ?? "";
        if (_byMn.TryGetValue(mn, out var known) && known.PasswordIs(pw))
        {
            return known;
        }

        if (known is null && _byMn.Count >= MaxStations)
        {
            _devices.CountRejected(Protocol, "too_many_stations");
            return null;
        }

        var (identity, refusal) = await _stations.IdentifyAsync(mn, pw, _connection.RemoteEndPoint, _connection.ConnectionClosed);
        if (identity is null)
        {
            _devices.CountRejected(Protocol, refusal!);
            return null;
        }

        if (known is not null && known.Device.Id == identity.Device.Id)
        {
            // The station's password was changed (by the console, or by the station): the new one is verified now.
            known.SetPassword(pw);
            return known;
        }

        var station = new Hj212ConnectedStation(mn, identity.Device, identity.Crc, identity.UtcOffset, frame.St ?? "91");
        station.SetPassword(pw);
        lock (_gate)
        {
            if (_closing)
            {
                return null;
            }

            if (known is not null && _byDevice.GetValueOrDefault(known.Device.Id) == known)
            {
                _byDevice.Remove(known.Device.Id);
            }

            _byMn[mn] = station;
            _byDevice[identity.Device.Id] = station;
        }

        if (known is not null)
        {
            _stations.Connections.Remove(known.Device, _connection);
        }

        _stations.Connections.Add(identity.Device, _connection);
        known?.Session?.Dispose();
        // Open may hand waiting persistent commands to TrySend on another thread: the station is registered first.
        station.Session = _devices.Open(identity.Device, _commands);
        station.Ready.TrySetResult(station.Session);
        return station;
    }

    // ---- uploads ----

    private async ValueTask UploadAsync(Hj212ConnectedStation station, Hj212Frame frame)
    {
        var command = frame.HasQn ? _commands.Waiting(frame.Qn) : null;
        if (command is not null && !Hj212Data.IsData(frame.Cn))
        {
            // What a read command asked for (1011 SystemTime, 1061 RtdInterval, ...): kept for its result.
            command.Collect(frame.Cp);
            station.Session!.Activity();
            await AnswerIfAskedAsync(station, frame);
            return;
        }

        long ts;
        string? problem;
        bool read;
        if (_preParsed)
        {
            // Read as UTC when the frame was parsed: the station's zone is known only now.
            read = _preParsedOk;
            ts = _preParsedTs - (long)station.UtcOffset.TotalMilliseconds;
            problem = _preParsedProblem;
        }
        else
        {
            _parsed.Clear();
            read = Hj212Data.TryRead(frame.Cp, station.UtcOffset, _parsed, _names, out ts, out problem);
        }

        if (!read)
        {
            if (Hj212Data.IsData(frame.Cn) || frame.Cp.Contains("DataTime=", StringComparison.Ordinal))
            {
                _devices.CountRejected(Protocol, "bad_data");
                LogBadData(_logger, station.Mn, frame.Cn, problem!);
                return;
            }

            // A command without data (a heartbeat, a notice the platform has no use for): alive, and answered when asked.
            station.Session!.Activity();
            await AnswerIfAskedAsync(station, frame);
            return;
        }

        _points.Clear();
        foreach (var point in _parsed)
        {
            _points.Add(new TelemetryPoint(point.Key, ts, ToValue(point)));
        }

        try
        {
            await station.Session!.SubmitAsync(_points, 0, _points.Count, _connection.ConnectionClosed);
        }
        catch (Exception ex) when (ex is not OperationCanceledException and not OutOfMemoryException)
        {
            // Not stored: not acknowledged, so the station sends it again.
            _devices.CountRejected(Protocol, "not_stored");
            LogNotStored(_logger, station.Mn, ex);
            return;
        }

        if (command is not null)
        {
            command.Frames++;
        }

        await AnswerIfAskedAsync(station, frame);
    }

    private static KvValue ToValue(Hj212Point point)
    {
        if (point.Number is not { } number)
        {
            return KvValue.Of(point.Text ?? "");
        }

        // Whole numbers as integers, as a JSON payload's would be.
        return Math.Abs(number) < 1e15 && number == Math.Truncate(number) ? KvValue.Of((long)number) : KvValue.Of(number);
    }

    /// <summary>The data answer (9014) when the frame's Flag asks for one, written from the frame's fields without a string.</summary>
    private Task AnswerIfAskedAsync(Hj212ConnectedStation station, Hj212Frame frame)
    {
        if (!frame.AnswerRequested || !Hj212Replies.TryWriteDataAnswer(_answer, frame.Qn, frame.HasQn, frame.Pw, frame.Mn, frame.Flag, out var length))
        {
            return Task.CompletedTask;
        }

        // _answer is the receive loop's: it is not written again before this send is awaited.
        return SendAsync(_answer.AsMemory(0, length), station.Crc);
    }

    // ---- commands (RPC, Hj212CommandChannel) ----

    bool IHj212CommandWriter.Closing => _closing;

    Hj212ConnectedStation? IHj212CommandWriter.StationOf(Device device)
    {
        lock (_gate)
        {
            return !_closing && _byDevice.TryGetValue(device.Id, out var station) ? station : null;
        }
    }

    Task IHj212CommandWriter.SendAsync(string segment, Hj212CrcKind crc) => SendAsync(segment.AsMemory(), crc);

    async Task IHj212CommandWriter.ReplyAsync(Hj212ConnectedStation station, int requestId, string json, bool failed)
    {
        var session = await station.Ready.Task;
        await session.ReplyAsync(requestId, json, failed);
    }

    // ---- writing ----

    private async Task SendAsync(ReadOnlyMemory<char> segment, Hj212CrcKind crc)
    {
        await _sendGate.WaitAsync();
        try
        {
            var output = _connection.Transport.Output;
            Hj212Framing.Write(output, segment.Span, crc);
            await output.FlushAsync();
        }
        catch (Exception ex) when (ex is InvalidOperationException or IOException or ConnectionResetException or ConnectionAbortedException or OperationCanceledException)
        {
            // The connection is closing; the station sends again, or its command is retried by the RPC service.
        }
        finally
        {
            _sendGate.Release();
        }
    }

    [LoggerMessage(EventId = 9210, Level = LogLevel.Debug, Message = "HJ 212 connection from {Remote} closed: {Reason}")]
    private static partial void LogClosing(ILogger logger, System.Net.EndPoint? remote, string reason);

    [LoggerMessage(EventId = 9211, Level = LogLevel.Error, Message = "HJ 212 connection from {Remote} failed")]
    private static partial void LogFailed(ILogger logger, System.Net.EndPoint? remote, Exception exception);

    [LoggerMessage(EventId = 9212, Level = LogLevel.Debug, Message = "HJ 212 station {Mn}: split message refused: {Problem}")]
    private static partial void LogSplitRefused(ILogger logger, string mn, string problem);

    [LoggerMessage(EventId = 9213, Level = LogLevel.Debug, Message = "HJ 212 station {Mn}: CN {Cn} data refused: {Problem}")]
    private static partial void LogBadData(ILogger logger, string mn, string cn, string problem);

    [LoggerMessage(EventId = 9214, Level = LogLevel.Warning, Message = "HJ 212 station {Mn}: data not stored; it is not acknowledged")]
    private static partial void LogNotStored(ILogger logger, string mn, Exception exception);
}
