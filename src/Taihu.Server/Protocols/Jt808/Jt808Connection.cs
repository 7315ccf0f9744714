using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Connections;
using Taihu.Platform;
using Taihu.Platform.Devices;
using Taihu.Platform.Telemetry;
using Taihu.Protocols.Jt808;

namespace Taihu.Server.Protocols.Jt808;

/// <summary>
/// One terminal's TCP connection: frames in, the platform's calls and the standard's replies out.
/// </summary>
/// <remarks>
/// States: a new connection may register (0x0100, answered with 0x8100) and must authenticate (0x0102); anything
/// else before authentication closes it. Authenticated, it owns a <see cref="ProtocolDeviceSession"/>: locations
/// become telemetry and are answered with 0x8001 after they are committed, heartbeats count as activity, and RPC
/// commands from the platform go out through its <see cref="Jt808CommandChannel"/> (0x8201, 0x8103, 0x8300), which
/// matches the terminal's answers (0x0001 or 0x0201) to them. The receive loop is the one owner of the connection's
/// state; RPC sends come from other threads and share only the write lock and the serial counter.
/// A frame that cannot be read is counted by reason and skipped (or answered with result 2 when its header can be
/// read and it belongs to this terminal); a frame that cannot be trusted to come from the terminal closes the
/// connection. Nothing of a refused frame is stored.
/// </remarks>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001", Justification = "The write lock never creates a wait handle, and RPC sends may still wait on it after the connection ends.")]
internal sealed partial class Jt808Connection : IJt808CommandWriter
{
    private const string Protocol = Jt808Services.Protocol;
    private const string VersionAttribute = "jt808Version";
    private static readonly string[] VersionAttributeKeys = [VersionAttribute];

    private readonly Jt808Services _services;
    private readonly ConnectionContext _connection;
    private readonly PipeReader _input;
    private readonly PipeWriter _output;
    private readonly SemaphoreSlim _writeLock = new(1, 1);
    private readonly byte[] _message = new byte[Jt808Framing.MaxUnescapedLength];
    private readonly byte[] _reply = new byte[1023];
    private readonly List<TelemetryPoint> _points = [];
    private readonly Jt808CommandChannel _commands;
    private readonly Jt808Reassembly _reassembly;
    private byte[]? _scratch;
    private Jt808HeaderForm? _form;
    private byte[]? _phoneBcd;
    private string? _code;
    private Jt808Version? _versionSetting;
    private Taihu.Broker.PublishRateLimiter? _limiter;
    private volatile ProtocolDeviceSession? _session;
    private Device? _speaksFor;
    private int _serial = -1;
    private volatile bool _closing;
    private bool _outputDone;

    public Jt808Connection(Jt808Services services, ConnectionContext connection)
    {
        _services = services;
        _connection = connection;
        _input = connection.Transport.Input;
        _output = connection.Transport.Output;
        _reassembly = new Jt808Reassembly(services.Time) { Timeout = services.Options.IdleTimeout };
        _commands = new Jt808CommandChannel(this, services.Logger);
    }

    private ProtocolDevices Devices => _services.Devices;

    public async Task RunAsync()
    {
        using var idle = new CancellationTokenSource(Timeout.InfiniteTimeSpan, _services.Time);
        idle.CancelAfter(_services.Options.IdleTimeout);
        try
        {
            while (!_closing)
            {
                ReadResult result;
                try
                {
                    result = await _input.ReadAsync(idle.Token);
                }
                catch (OperationCanceledException) when (idle.IsCancellationRequested)
                {
                    Devices.CountRejected(Protocol, "timeout");
                    return;
                }

                var buffer = result.Buffer;
                while (!_closing)
                {
                    var status = Next(buffer, out var length, out var consumed, out var error);
                    if (status == Jt808ReadStatus.NeedMore)
                    {
                        buffer = buffer.Slice(consumed);
                        break;
                    }

                    buffer = buffer.Slice(consumed);
                    if (status == Jt808ReadStatus.Invalid)
                    {
                        await RefusedFrameAsync(error, length);
                        continue;
                    }

                    Devices.CountFrame(Protocol);
                    if (await HandleFrameAsync(length))
                    {
                        idle.CancelAfter(_services.Options.IdleTimeout);
                    }
                }

                _input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    return;
                }
            }
        }
        catch (ConnectionResetException)
        {
            // The terminal went away.
        }
        catch (ConnectionAbortedException)
        {
            // Closed by the server: the device was deleted or its credentials changed, the terminal connected
            // again on another connection, or the server is stopping.
        }
        finally
        {
            _closing = true;
            if (_speaksFor is { } device)
            {
                _services.Connections.Remove(device, _connection);
            }

            _session?.Dispose();

            await _input.CompleteAsync();
            await _writeLock.WaitAsync();
            try
            {
                _outputDone = true;
                await _output.CompleteAsync();
            }
            finally
            {
                _writeLock.Release();
            }
        }
    }

    /// <summary>Takes the next frame (or what to skip) from the buffer, into <see cref="_message"/>.</summary>
    private Jt808ReadStatus Next(ReadOnlySequence<byte> buffer, out int length, out long consumed, out Jt808FrameError error)
    {
        int taken;
        Jt808ReadStatus status;
        if (buffer.IsSingleSegment)
        {
            status = Jt808Framing.TryRead(buffer.FirstSpan, _message, out length, out taken, out error);
        }
        else
        {
            // Across segments: a copy of as much as one escaped frame can take, which decides either way.
            _scratch ??= new byte[(2 * Jt808Framing.MaxUnescapedLength) + 8];
            var n = (int)Math.Min(buffer.Length, _scratch.Length);
            buffer.Slice(0, n).CopyTo(_scratch);
            status = Jt808Framing.TryRead(_scratch.AsSpan(0, n), _message, out length, out taken, out error);
        }

        consumed = taken;
        return status;
    }

    private async ValueTask RefusedFrameAsync(Jt808FrameError error, int length)
    {
        switch (error)
        {
            case Jt808FrameError.NotAFrameStart:
                Devices.CountRejected(Protocol, "garbage");
                break;
            case Jt808FrameError.BadEscape:
                Devices.CountRejected(Protocol, "bad_escape");
                break;
            case Jt808FrameError.TooShort:
                Devices.CountRejected(Protocol, "bad_length");
                break;
            case Jt808FrameError.TooLong:
                Devices.CountRejected(Protocol, "too_long");
                _closing = true;
                break;
            default:
                Devices.CountRejected(Protocol, "bad_check_code");
                // The standard's "message error" where the frame can be answered: its header reads and it is this terminal's.
                if (_session is not null && Jt808HeaderFields.TryRead(_message.AsSpan(0, length), out var header) == Jt808HeaderError.None
                    && SamePhone(header.Phone(_message.AsSpan(0, length))))
                {
                    await ReplyAsync(header, Jt808Results.BadMessage);
                }

                break;
        }
    }

    /// <summary>Handles one frame whose check code matched; true when it was valid (it counts as activity). The hot path
    /// (a location, its commit, the reply) runs on pooled state machines, so a report allocates only the points kept.</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> HandleFrameAsync(int length)
    {
        // The header is read in place (no allocation); the phone number as text only for registration and authentication.
        var message = _message.AsSpan(0, length);
        if (Jt808HeaderFields.TryRead(message, out var header) != Jt808HeaderError.None)
        {
            Devices.CountRejected(Protocol, "bad_length");
            return false;
        }

        if (_phoneBcd is not null && !SamePhone(header.Phone(message)))
        {
            // One connection speaks for one terminal.
            Devices.CountRejected(Protocol, "phone_mismatch");
            _closing = true;
            return false;
        }

        if (_form is null || !_form.Matches(header, message))
        {
            _form = new Jt808HeaderForm(header, message);
        }

        var phone = header.MessageId is Jt808MessageIds.Registration or Jt808MessageIds.Authentication ? Jt808Header.PhoneDigits(header.Phone(message)) : "";
        if (header.Encryption != 0)
        {
            Devices.CountRejected(Protocol, "encrypted");
            await ReplyAsync(header, Jt808Results.NotSupported);
            return true;
        }

        ReadOnlyMemory<byte> body = _message.AsMemory(header.Length, header.BodyLength);
        if (header.IsSubpackage)
        {
            if (_session is null)
            {
                return Refuse("not_authenticated");
            }

            switch (_reassembly.Add(header, body.Span, out var whole, out _))
            {
                case Jt808PackageOutcome.Waiting:
                    await ReplyAsync(header, Jt808Results.Ok);
                    return true;
                case Jt808PackageOutcome.Refused:
                    Devices.CountRejected(Protocol, "subpackage");
                    await ReplyAsync(header, Jt808Results.BadMessage);
                    return false;
                default:
                    body = whole;
                    break;
            }
        }

        if (_session is null)
        {
            return header.MessageId switch
            {
                Jt808MessageIds.Registration => await RegisterAsync(header, phone, body),
                Jt808MessageIds.Authentication => await AuthenticateAsync(header, phone, body),
                _ => Refuse("not_authenticated"),
            };
        }

        switch (header.MessageId)
        {
            case Jt808MessageIds.Heartbeat:
                _session.Activity();
                await ReplyAsync(header, Jt808Results.Ok);
                return true;
            case Jt808MessageIds.Location or Jt808MessageIds.LocationBatch when _limiter is not null && _limiter.TryTake(body.Length) != Taihu.Broker.RateLimitResult.Allowed:
                Devices.CountRejected(Protocol, "rate_limited");
                await ReplyAsync(header, Jt808Results.Failure);
                return true;
            case Jt808MessageIds.Location:
                return await LocationAsync(header, body);
            case Jt808MessageIds.LocationBatch:
                return await LocationBatchAsync(header, body);
            case Jt808MessageIds.TerminalReply:
                TerminalReply(body.Span);
                return true;
            case Jt808MessageIds.LocationQueryReply:
                return await LocationQueryReplyAsync(header, body);
            case Jt808MessageIds.Deregistration:
                // The terminal gives up its registration; the device and its credentials stay (an operator deletes devices).
                await ReplyAsync(header, Jt808Results.Ok);
                _closing = true;
                return true;
            case Jt808MessageIds.Registration:
                return await RegisterAsync(header, phone, body);
            case Jt808MessageIds.Authentication:
                await ReplyAsync(header, Jt808Authentication.TryRead(body.Span, out var again, out _) && CodeMatches(again!.Code, _code!) ? Jt808Results.Ok : Jt808Results.Failure);
                return true;
            default:
                Devices.CountRejected(Protocol, "unsupported_message");
                await ReplyAsync(header, Jt808Results.NotSupported);
                return true;
        }
    }

    private bool Refuse(string reason)
    {
        Devices.CountRejected(Protocol, reason);
        _closing = true;
        return false;
    }

    /// <summary>The terminal's phone number as BCD, as it encoded it; a terminal that changes header layout is compared by digits.</summary>
    private bool SamePhone(ReadOnlySpan<byte> bcd) =>
        _phoneBcd is not null && (bcd.SequenceEqual(_phoneBcd)
            || (bcd.Length != _phoneBcd.Length && Jt808Header.PhoneDigits(bcd).TrimStart('0') == Jt808Header.PhoneDigits(_phoneBcd).TrimStart('0')));

    private async ValueTask<bool> RegisterAsync(Jt808HeaderFields header, string phone, ReadOnlyMemory<byte> body)
    {
        var stored = await Devices.FindAsync(DeviceService.Jt808Lookup(phone));
        if (stored is { Type: CredentialsType.Jt808 } && _versionSetting is null)
        {
            _versionSetting = await VersionSettingAsync(stored.Device);
        }

        var version = _versionSetting ?? Jt808Registration.Guess(header.Is2019Layout || header.VersionFlag, body.Length);
        if (!Jt808Registration.TryRead(body.Span, version, out var registration, out _))
        {
            Devices.CountRejected(Protocol, "bad_message");
            await ReplyAsync(header, Jt808Results.BadMessage);
            return false;
        }

        string code;
        Device device;
        if (stored is { Type: CredentialsType.Jt808, UserName: { } storedCode })
        {
            (device, code) = (stored.Device, storedCode);
        }
        else if (await ProvisionAsync(phone, registration!) is { } created)
        {
            (device, code) = created;
        }
        else
        {
            Devices.CountRejected(Protocol, "unknown_device");
            await RegistrationReplyAsync(header, Jt808RegistrationResults.NoSuchTerminal, null);
            _closing = true;
            return false;
        }

        _phoneBcd ??= _form!.Phone.ToArray();
        await _services.Data.SaveClientAttributesAsync(device.Seq, RegistrationAttributes(registration!));
        await RegistrationReplyAsync(header, Jt808RegistrationResults.Ok, code);
        return true;
    }

    /// <summary>
    /// An unknown terminal is created only when its manufacturer ID is the provision key of a profile that allows
    /// devices to create themselves (provision keys are unique, so at most one matches), in that profile's tenant.
    /// </summary>
    private async Task<(Device, string)?> ProvisionAsync(string terminalPhone, Jt808Registration registration)
    {
        if (registration.ManufacturerId.Length == 0 || await Devices.FindProvisioningProfileAsync(registration.ManufacturerId) is not { } profile)
        {
            return null;
        }

        var phone = terminalPhone.TrimStart('0');
        phone = phone.Length == 0 ? "0" : phone;
        var name = registration.Plate.Length > 0 ? $"{registration.Plate} ({phone})" : phone;
        var code = CredentialHasher.NewAccessToken();
        try
        {
            var device = await _services.DeviceService.CreateInternalWithCredentialsAsync(profile.TenantId, name, null, profile, null,
                new CredentialsDraft(CredentialsType.Jt808, phone, null, null, code, null));
            LogProvisioned(_services.Logger, phone, name, profile.Name);
            return (device, code);
        }
        catch (PlatformException ex)
        {
            LogProvisioningFailed(_services.Logger, phone, ex.Message);
            Devices.CountRejected(Protocol, "provisioning_failed");
            return null;
        }
    }

    private static byte[] RegistrationAttributes(Jt808Registration registration)
    {
        var buffer = new ArrayBufferWriter<byte>(256);
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            json.WriteNumber("provinceId", registration.Province);
            json.WriteNumber("cityId", registration.City);
            json.WriteString("manufacturerId", registration.ManufacturerId);
            json.WriteString("terminalModel", registration.Model);
            json.WriteString("terminalId", registration.TerminalId);
            json.WriteNumber("plateColor", registration.PlateColor);
            json.WriteString("plateNumber", registration.Plate);
            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }

    private async ValueTask<bool> AuthenticateAsync(Jt808HeaderFields header, string phone, ReadOnlyMemory<byte> body)
    {
        if (!Jt808Authentication.TryRead(body.Span, out var authentication, out _))
        {
            Devices.CountRejected(Protocol, "bad_message");
            await ReplyAsync(header, Jt808Results.Failure);
            _closing = true;
            return false;
        }

        var stored = await Devices.FindAsync(DeviceService.Jt808Lookup(phone));
        if (stored is not { Type: CredentialsType.Jt808, UserName: { } code })
        {
            Devices.CountRejected(Protocol, "unknown_device");
            await ReplyAsync(header, Jt808Results.Failure);
            _closing = true;
            return false;
        }

        if (!CodeMatches(authentication!.Code, code))
        {
            Devices.CountRejected(Protocol, "wrong_password");
            await ReplyAsync(header, Jt808Results.Failure);
            _closing = true;
            return false;
        }

        _versionSetting ??= await VersionSettingAsync(stored.Device);
        // The device profile's publish limits, as for an MQTT connection: a report over them is refused (not stored).
        _limiter = Taihu.Broker.PublishRateLimiter.Create(_services.Time, stored.RateLimits?.MessagesPerSecond ?? 0, stored.RateLimits?.BytesPerSecond ?? 0);
        _phoneBcd ??= _form!.Phone.ToArray();
        _code = code;
        // A terminal that authenticates again on a new connection (its old one half-open, say) replaces the old one.
        // This connection takes the device over before its answer goes out: a terminal that has its answer and then
        // authenticates on another connection is the newer one, whatever the order the two connections' threads run in.
        _speaksFor = stored.Device;
        _services.Connections.TakeOver(stored.Device, _connection);
        // The answer goes out before the session opens: opening sends waiting persistent RPC, which must follow it.
        await ReplyAsync(header, Jt808Results.Ok);
        // Opening may send waiting persistent calls at once (TrySend on this thread); the channel keeps answers to
        // those that fail until the session is set.
        var session = Devices.Open(stored.Device, _commands);
        _session = session;
        _commands.Opened(session);
        if (authentication.Imei is not null)
        {
            await session.SaveClientAttributesAsync(JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string?>
            {
                ["imei"] = authentication.Imei,
                ["softwareVersion"] = authentication.SoftwareVersion,
            }));
        }

        return true;
    }

    private static bool CodeMatches(string sent, string stored) =>
        CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(sent), Encoding.UTF8.GetBytes(stored));

    /// <summary>The device's server attribute <c>jt808Version</c> (2011, 2013 or 2019), which overrides what the frames say.</summary>
    private async Task<Jt808Version?> VersionSettingAsync(Device device)
    {
        var attributes = await Devices.GetServerAttributesAsync(device, VersionAttributeKeys);
        foreach (var attribute in attributes)
        {
            switch (attribute.Value.ToString())
            {
                case "2011": return Jt808Version.V2011;
                case "2013": return Jt808Version.V2013;
                case "2019": return Jt808Version.V2019;
            }
        }

        return null;
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> LocationAsync(Jt808HeaderFields header, ReadOnlyMemory<byte> body)
    {
        _points.Clear();
        if (Jt808Location.TryRead(body.Span, out var location) != Jt808LocationError.None || !TimeAcceptable(location.TimeMs))
        {
            Devices.CountRejected(Protocol, "bad_message");
            await ReplyAsync(header, Jt808Results.BadMessage);
            return false;
        }

        Jt808Telemetry.Add(location, _services.Time.GetUtcNow().ToUnixTimeMilliseconds(), _points);
        return await SubmitAsync(header);
    }

    /// <summary>0x0704: a count, a type (0 regular, 1 reported late from a blind area), then items of length + location; all or nothing.</summary>
    private async ValueTask<bool> LocationBatchAsync(Jt808HeaderFields header, ReadOnlyMemory<byte> body)
    {
        _points.Clear();
        if (!AddBatch(body.Span))
        {
            _points.Clear();
            Devices.CountRejected(Protocol, "bad_message");
            await ReplyAsync(header, Jt808Results.BadMessage);
            return false;
        }

        return await SubmitAsync(header);
    }

    private bool AddBatch(ReadOnlySpan<byte> body)
    {
        if (body.Length < 3)
        {
            return false;
        }

        var count = BinaryPrimitives.ReadUInt16BigEndian(body);
        var rest = body[3..];
        var now = _services.Time.GetUtcNow().ToUnixTimeMilliseconds();
        for (var i = 0; i < count; i++)
        {
            if (rest.Length < 2)
            {
                return false;
            }

            var length = BinaryPrimitives.ReadUInt16BigEndian(rest);
            if (length > rest.Length - 2 || Jt808Location.TryRead(rest.Slice(2, length), out var location) != Jt808LocationError.None || !TimeAcceptable(location.TimeMs))
            {
                return false;
            }

            Jt808Telemetry.Add(location, now, _points);
            rest = rest[(2 + length)..];
        }

        return rest.IsEmpty;
    }

    /// <summary>A report's time within the ingest's bounds (0, no time, is stamped with the time received).</summary>
    private bool TimeAcceptable(long ms) =>
        ms == 0 || (ms >= _services.EarliestMs && ms <= _services.Time.GetUtcNow().ToUnixTimeMilliseconds() + _services.MaxFutureSkewMs);

    /// <summary>Submits <see cref="_points"/> and answers after they are committed (with <c>Ingest:AckAfterCommit</c>).</summary>
    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> SubmitAsync(Jt808HeaderFields header)
    {
        try
        {
            await _session!.SubmitAsync(_points, 0, _points.Count);
        }
        catch (Exception ex) when (ex is not OutOfMemoryException and not OperationCanceledException)
        {
            LogIngestFailed(_services.Logger, ex);
            Devices.CountRejected(Protocol, "ingest_failed");
            await ReplyAsync(header, Jt808Results.Failure);
            return true;
        }

        await ReplyAsync(header, Jt808Results.Ok);
        return true;
    }

    private void TerminalReply(ReadOnlySpan<byte> body)
    {
        if (Jt808GeneralReply.TryRead(body, out var reply))
        {
            _commands.GeneralReply(reply);
        }
    }

    private async ValueTask<bool> LocationQueryReplyAsync(Jt808HeaderFields header, ReadOnlyMemory<byte> body)
    {
        _points.Clear();
        if (body.Length < 2 || Jt808Location.TryRead(body.Span[2..], out var location) != Jt808LocationError.None)
        {
            Devices.CountRejected(Protocol, "bad_message");
            await ReplyAsync(header, Jt808Results.BadMessage);
            return false;
        }

        Jt808Telemetry.Add(location, _services.Time.GetUtcNow().ToUnixTimeMilliseconds(), _points);
        _commands.LocationReply(BinaryPrimitives.ReadUInt16BigEndian(body.Span), _points);

        // The answer is a location like any other: it is kept as telemetry too. No general reply: 0x0201 is itself one.
        await _session!.SubmitAsync(_points, 0, _points.Count);
        return true;
    }

    // ---- RPC (Jt808CommandChannel) ----

    (Jt808HeaderForm Form, Jt808Version Version)? IJt808CommandWriter.Terminal =>
        _form is { } form ? (form, _versionSetting ?? (form.ProtocolVersion is not null || form.VersionFlag ? Jt808Version.V2019 : Jt808Version.V2013)) : null;

    bool IJt808CommandWriter.Closing => _closing;

    ushort IJt808CommandWriter.NextSerial() => NextSerial();

    ValueTask<bool> IJt808CommandWriter.WriteAsync(Jt808HeaderForm form, ushort messageId, ushort serial, byte[] body, int length) => WriteAsync(form, messageId, serial, body, length);

    // ---- Writing ----

    private ushort NextSerial() => (ushort)Interlocked.Increment(ref _serial);

    private ValueTask<bool> ReplyAsync(Jt808HeaderFields header, byte result)
    {
        var length = new Jt808GeneralReply(header.Serial, header.MessageId, result).Write(_reply);
        return WriteAsync(_form!, Jt808MessageIds.PlatformReply, NextSerial(), _reply, length);
    }

    private ValueTask<bool> RegistrationReplyAsync(Jt808HeaderFields header, byte result, string? code)
    {
        var length = Jt808Bodies.RegistrationReply(_reply, header.Serial, result, code);
        return WriteAsync(_form!, Jt808MessageIds.RegistrationReply, NextSerial(), _reply, length);
    }

    [System.Runtime.CompilerServices.AsyncMethodBuilder(typeof(System.Runtime.CompilerServices.PoolingAsyncValueTaskMethodBuilder<>))]
    private async ValueTask<bool> WriteAsync(Jt808HeaderForm form, ushort messageId, ushort serial, byte[] body, int length)
    {
        await _writeLock.WaitAsync();
        try
        {
            if (_outputDone)
            {
                return false;
            }

            Jt808Writer.WriteFrame(_output, form, messageId, serial, body.AsSpan(0, length));
            var flushed = await _output.FlushAsync();
            return !flushed.IsCompleted;
        }
        finally
        {
            _writeLock.Release();
        }
    }

    [LoggerMessage(EventId = 1410, Level = LogLevel.Information, Message = "JT/T 808 terminal {Phone} registered and created as device '{Name}' in profile '{Profile}'")]
    private static partial void LogProvisioned(ILogger logger, string phone, string name, string profile);

    [LoggerMessage(EventId = 1411, Level = LogLevel.Warning, Message = "JT/T 808 terminal {Phone} could not be created: {Reason}")]
    private static partial void LogProvisioningFailed(ILogger logger, string phone, string reason);

    [LoggerMessage(EventId = 1412, Level = LogLevel.Warning, Message = "JT/T 808 telemetry could not be stored")]
    private static partial void LogIngestFailed(ILogger logger, Exception exception);

}
