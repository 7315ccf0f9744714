using System.Net.Sockets;
using System.Text.Json;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Running;

/// <summary>
/// What HJ 212 stations and JT/T 808 terminals share: one TCP connection to the listener, a loop that reads the
/// server's frames, uploads that wait for their answer (matched by a key the protocol gives: HJ 212's QN, JT/T 808's
/// serial number), and reconnecting with the fleet's back-off when the server or the network closes the connection.
/// The protocol's part is the frames: <see cref="HandshakeAsync"/> after connecting, <see cref="ReadFrames"/> for what
/// arrives, and the uploads themselves.
/// </summary>
public abstract class TcpSimDevice(string host, int port, FleetDefinition fleet, ScenarioScaling scaling, Random random) : ISimDevice
{
    /// <summary>How long an upload waits for its answer (real time): a station or terminal then counts it as not answered.</summary>
    protected static readonly TimeSpan AnswerTimeout = TimeSpan.FromSeconds(15);

    private readonly CancellationTokenSource _stopping = new();
    private readonly SemaphoreSlim _write = new(1, 1);
    private readonly Dictionary<string, TaskCompletionSource<SendResult>> _pending = new(StringComparer.Ordinal);
    private Socket? _socket;
    private int _reconnecting;
    private int _connectionsLost;
    private int _reconnects;
    private int _rpcAnswered;
    private volatile bool _wanted;
    private volatile bool _dropping;

    public bool IsConnected => _socket is { Connected: true } && !_dropping;

    public int ConnectionsLost => Volatile.Read(ref _connectionsLost);

    public int Reconnects => Volatile.Read(ref _reconnects);

    public int RpcAnswered => Volatile.Read(ref _rpcAnswered);

    public int AttributeUpdates => 0;

    protected CancellationToken Stopping => _stopping.Token;

    protected void CountRpcAnswered() => Interlocked.Increment(ref _rpcAnswered);

    public async Task ConnectAsync(CancellationToken cancellationToken)
    {
        _wanted = true;
        await ConnectOnceAsync(cancellationToken);
    }

    private async Task ConnectOnceAsync(CancellationToken cancellationToken)
    {
        var socket = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            await socket.ConnectAsync(host, port, cancellationToken);
        }
        catch
        {
            socket.Dispose();
            throw;
        }

        _socket = socket;
        _dropping = false;
        _ = ReceiveAsync(socket);
        await HandshakeAsync(cancellationToken);
    }

    /// <summary>What the device says first on a new connection (JT/T 808's authentication); throws when refused.</summary>
    protected virtual Task HandshakeAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    /// <summary>Handles the frames in <paramref name="buffer"/>; returns the bytes consumed (the rest waits for more).</summary>
    protected abstract int ReadFrames(ReadOnlySpan<byte> buffer);

    private async Task ReceiveAsync(Socket socket)
    {
        var buffer = new byte[16 * 1024];
        var filled = 0;
        try
        {
            while (true)
            {
                if (filled == buffer.Length)
                {
                    // Nothing the protocol can read in a full buffer: not a server of this protocol.
                    break;
                }

                var read = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None, _stopping.Token);
                if (read == 0)
                {
                    break;
                }

                filled += read;
                var consumed = ReadFrames(buffer.AsSpan(0, filled));
                buffer.AsSpan(consumed, filled - consumed).CopyTo(buffer);
                filled -= consumed;
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException or OperationCanceledException)
        {
            // Closed: by the server, the network, or this device.
        }

        Closed(socket);
    }

    private void Closed(Socket socket)
    {
        if (!ReferenceEquals(Interlocked.CompareExchange(ref _socket, null, socket), socket))
        {
            return;
        }

        socket.Dispose();
        FailPending(SendResult.ClosedByServerOutcome);
        if (_stopping.IsCancellationRequested || _dropping)
        {
            return;
        }

        Interlocked.Increment(ref _connectionsLost);
        if (_wanted)
        {
            _ = ReconnectAsync();
        }
    }

    private void FailPending(string outcome)
    {
        List<TaskCompletionSource<SendResult>> waiting;
        lock (_pending)
        {
            waiting = [.. _pending.Values];
            _pending.Clear();
        }

        foreach (var pending in waiting)
        {
            pending.TrySetResult(new SendResult(false, outcome));
        }
    }

    /// <summary>Waits the back-off (initial, doubling to max, ±25% jitter; scenario time) and connects again until it works.</summary>
    private async Task ReconnectAsync()
    {
        if (Interlocked.Exchange(ref _reconnecting, 1) == 1)
        {
            return;
        }

        try
        {
            if (await ReconnectBackoff.RunAsync(fleet.Behaviour, scaling, random, () => _wanted && _socket is null, async cancellationToken =>
                {
                    try
                    {
                        await ConnectOnceAsync(cancellationToken);
                        return true;
                    }
                    catch (Exception e) when (e is SocketException or InvalidOperationException or TimeoutException)
                    {
                        DropSocket();
                        return false;
                    }
                }, _stopping.Token))
            {
                Interlocked.Increment(ref _reconnects);
            }
        }
        catch (OperationCanceledException)
        {
            // The run is over.
        }
        finally
        {
            Volatile.Write(ref _reconnecting, 0);
        }
    }

    private void DropSocket()
    {
        var socket = Interlocked.Exchange(ref _socket, null);
        socket?.Dispose();
    }

    public Task DropAsync(bool reconnect)
    {
        _wanted = reconnect;
        _dropping = true;
        DropSocket();
        FailPending("dropped by the run");
        if (reconnect)
        {
            _ = ReconnectAsync();
        }

        return Task.CompletedTask;
    }

    /// <summary>Connects again now, with no back-off (the end of a silence); on failure the back-off takes over.</summary>
    public async Task<bool> ReconnectNowAsync(CancellationToken cancellationToken)
    {
        _wanted = true;
        if (_socket is not null)
        {
            return true;
        }

        try
        {
            await ConnectOnceAsync(cancellationToken);
            Interlocked.Increment(ref _reconnects);
            return true;
        }
        catch (Exception e) when (e is SocketException or InvalidOperationException or TimeoutException)
        {
            DropSocket();
            _ = ReconnectAsync();
            return false;
        }
    }

    /// <summary>Writes a frame on the connection.</summary>
    protected async Task<bool> WriteAsync(byte[] frame, CancellationToken cancellationToken)
    {
        if (_socket is not { } socket)
        {
            return false;
        }

        await _write.WaitAsync(cancellationToken);
        try
        {
            await socket.SendAsync(frame, SocketFlags.None, cancellationToken);
            return true;
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return false;
        }
        finally
        {
            _write.Release();
        }
    }

    /// <summary>Writes an upload and waits for the answer that <see cref="Answer"/> gives it under <paramref name="key"/>.</summary>
    protected async Task<SendResult> SendAndWaitAsync(string key, byte[] frame, CancellationToken cancellationToken)
    {
        var (answer, written) = await WaitForAnswerAsync(key, frame, cancellationToken);
        if (answer is null)
        {
            return written;
        }

        try
        {
            return await answer.Task.WaitAsync(AnswerTimeout, cancellationToken);
        }
        catch (TimeoutException)
        {
            Forget(key);
            return new SendResult(false, "no answer");
        }
    }

    /// <summary>
    /// Writes a frame the server must not take (<paramref name="key"/> is the answer it would get if taken), then a
    /// request the server answers: that answer shows the bad frame was read before it, so whether the bad frame got
    /// an answer of its own by then says how the server took it, without waiting on a clock.
    /// </summary>
    protected async Task<SendResult> SendUnansweredAsync(string key, byte[] frame, Func<CancellationToken, Task<SendResult>> thenAskAsync, string ignored, CancellationToken cancellationToken)
    {
        var (answer, written) = await WaitForAnswerAsync(key, frame, cancellationToken);
        if (answer is null)
        {
            return written;
        }

        var after = await thenAskAsync(cancellationToken);
        Forget(key);
        if (answer.Task.IsCompleted)
        {
            return answer.Task.Result;
        }

        return after.Acknowledged ? new SendResult(false, ignored) : after;
    }

    /// <summary>A frame the server must refuse (a broken check), and how the server took it.</summary>
    public abstract Task<SendResult> SendMalformedAsync(CancellationToken cancellationToken);

    /// <summary>Registers the answer <paramref name="key"/> waits for, then writes the frame; no answer to wait for when it could not be written (and why).</summary>
    private async Task<(TaskCompletionSource<SendResult>? Answer, SendResult Written)> WaitForAnswerAsync(string key, byte[] frame, CancellationToken cancellationToken)
    {
        if (!IsConnected)
        {
            return (null, SendResult.NotConnected);
        }

        var answer = new TaskCompletionSource<SendResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_pending)
        {
            _pending[key] = answer;
        }

        if (!await WriteAsync(frame, cancellationToken))
        {
            Forget(key);
            return (null, SendResult.ClosedByServer);
        }

        return (answer, SendResult.Ok);
    }

    private void Forget(string key)
    {
        lock (_pending)
        {
            _pending.Remove(key);
        }
    }

    /// <summary>The server answered the upload waiting under <paramref name="key"/> (if any still waits).</summary>
    protected void Answer(string key, SendResult result)
    {
        TaskCompletionSource<SendResult>? waiting;
        lock (_pending)
        {
            _pending.Remove(key, out waiting);
        }

        waiting?.TrySetResult(result);
    }

    public abstract Task<SendResult> SendTelemetryAsync(byte[] payload, CancellationToken cancellationToken);

    /// <summary>Neither protocol has client attributes: a station's and a terminal's own data are what it reports.</summary>
    public Task<SendResult> SendAttributesAsync(byte[] payload, CancellationToken cancellationToken) => Task.FromResult(SendResult.Ok);

    /// <summary>Reads the run's <c>{"ts":..,"values":{..}}</c>; false for anything else (a fault's garbage: the protocol cannot carry it).</summary>
    protected static bool TryReadReport(byte[] payload, out long ts, out JsonDocument? document)
    {
        ts = 0;
        document = null;
        try
        {
            document = JsonDocument.Parse(payload);
            if (document.RootElement.ValueKind == JsonValueKind.Object && document.RootElement.TryGetProperty("ts", out var t) && t.TryGetInt64(out ts)
                && document.RootElement.TryGetProperty("values", out var values) && values.ValueKind == JsonValueKind.Object)
            {
                return true;
            }
        }
        catch (JsonException)
        {
        }

        document?.Dispose();
        document = null;
        return false;
    }

    public async ValueTask DisposeAsync()
    {
        _wanted = false;
        await _stopping.CancelAsync();
        DropSocket();
        FailPending("the run is over");
        _stopping.Dispose();
        _write.Dispose();
        GC.SuppressFinalize(this);
    }
}
