using System.Buffers;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Taihu.Sim.Running;

/// <summary>
/// A TCP proxy on loopback between devices and the server, through which network faults are made: a pause (no
/// byte passes either way for a while, the sockets stay open) and a half-open connection (no byte passes any more
/// and neither side is closed, as when a mobile network drops a device without a word). It tells connections
/// apart by the MQTT client id in their CONNECT packet, and records when the server closes its side. For a real
/// device it listens on the device's own port, shows every MQTT packet both ways to a <see cref="MqttWatch"/>, and
/// can drop the connection and refuse the next attempts (to see the device's back-off).
/// </summary>
public sealed class FaultProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly string _serverHost;
    private readonly int _serverPort;
    private readonly MqttWatch? _watch;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<string, Link> _links = new(StringComparer.Ordinal);
    private readonly List<(long At, bool Refused)> _attempts = [];
    private readonly Task _accepting;
    private int _refuse;

    public FaultProxy(string serverHost, int serverPort, int port = 0, MqttWatch? watch = null)
    {
        _serverHost = serverHost;
        _serverPort = serverPort;
        _watch = watch;
        _listener = new TcpListener(IPAddress.Loopback, port);
        _listener.Start();
        _accepting = AcceptAsync();
    }

    /// <summary>The newest connection through the proxy (a real device's: it has one at a time).</summary>
    public Link? Current { get; private set; }

    /// <summary>Every connection attempt (a <see cref="Stopwatch"/> timestamp) and whether the proxy refused it.</summary>
    public IReadOnlyList<(long At, bool Refused)> Attempts
    {
        get
        {
            lock (_attempts)
            {
                return [.. _attempts];
            }
        }
    }

    /// <summary>The next <paramref name="count"/> connection attempts are closed as soon as they are accepted, as by a server that is down.</summary>
    public void RefuseNext(int count) => Volatile.Write(ref _refuse, count);

    /// <summary>Closes both sides of a link now, as a network that resets a connection.</summary>
    public static void Drop(Link link)
    {
        link.Dropped = true;
        Close(link.Device);
        Close(link.Server);
    }

    /// <summary>The port devices connect to instead of the server's.</summary>
    public int Port => ((IPEndPoint)_listener.LocalEndpoint).Port;

    /// <summary>One device connection through the proxy.</summary>
    public sealed class Link
    {
        private volatile TaskCompletionSource? _resume;

        internal Link(string clientId, Socket device, Socket server)
        {
            ClientId = clientId;
            Device = device;
            Server = server;
        }

        public string ClientId { get; }

        internal Socket Device { get; }

        internal Socket Server { get; }

        /// <summary>Set when the server closed its side: how long after the fault began (null before any fault).</summary>
        public TimeSpan? ServerClosedAfter { get; internal set; }

        public bool ServerClosed { get; internal set; }

        internal long FaultStarted { get; set; }

        /// <summary>No byte passes from now (until <see cref="Resume"/>, or never for a half-open link).</summary>
        public void Hold()
        {
            FaultStarted = Stopwatch.GetTimestamp();
            _resume = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        }

        public void Resume() => Interlocked.Exchange(ref _resume, null)?.TrySetResult();

        /// <summary>From now the link is half-open: bytes are read and dropped both ways, and neither side is closed by the proxy.</summary>
        public void Kill()
        {
            FaultStarted = Stopwatch.GetTimestamp();
            Dead = true;
            Resume();
        }

        public bool Dead { get; private set; }

        /// <summary>Closed by the proxy (<see cref="Drop"/>), not by either side.</summary>
        public bool Dropped { get; internal set; }

        internal Task WaitWhileHeldAsync() => _resume?.Task ?? Task.CompletedTask;
    }

    /// <summary>The current link of a device's client id, if it is connected through the proxy.</summary>
    public Link? Find(string clientId) => _links.TryGetValue(clientId, out var link) ? link : null;

    private async Task AcceptAsync()
    {
        try
        {
            while (!_stopping.IsCancellationRequested)
            {
                var device = await _listener.AcceptSocketAsync(_stopping.Token);
                var refuse = Volatile.Read(ref _refuse) > 0 && Interlocked.Decrement(ref _refuse) >= 0;
                lock (_attempts)
                {
                    _attempts.Add((Stopwatch.GetTimestamp(), refuse));
                }

                if (refuse)
                {
                    Close(device);
                    continue;
                }

                _ = HandleAsync(device);
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Stopped.
        }
    }

    private async Task HandleAsync(Socket device)
    {
        var server = new Socket(SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        device.NoDelay = true;
        try
        {
            await server.ConnectAsync(_serverHost, _serverPort, _stopping.Token);
            // The first bytes carry CONNECT: read until its client id can be seen, then pass them on.
            var first = new byte[4096];
            var length = 0;
            string? clientId = null;
            while (clientId is null && length < first.Length)
            {
                var read = await device.ReceiveAsync(first.AsMemory(length), _stopping.Token);
                if (read == 0)
                {
                    return;
                }

                length += read;
                clientId = ConnectClientId(first.AsSpan(0, length));
            }

            _watch?.DeviceSent(first.AsSpan(0, length), newConnection: true);
            await server.SendAsync(first.AsMemory(0, length), _stopping.Token);
            var link = new Link(clientId ?? "?", device, server);
            _links[link.ClientId] = link;
            Current = link;
            var up = PumpAsync(link, device, server, towardServer: true);
            var down = PumpAsync(link, server, device, towardServer: false);
            await Task.WhenAny(up, down);
            if (link.Dead)
            {
                // Half-open: each side must find out by itself (by its keep alive); the proxy closes nothing until
                // the server has, so that the server's detection can be timed.
                await down.WaitAsync(_stopping.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            }

            Close(device);
            Close(server);
            if (Current == link)
            {
                _watch?.Closed();
            }

            await Task.WhenAll(up, down).WaitAsync(TimeSpan.FromSeconds(10), _stopping.Token).ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
            _links.TryRemove(new KeyValuePair<string, Link>(link.ClientId, link));
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            Close(device);
            Close(server);
        }
    }

    private async Task PumpAsync(Link link, Socket from, Socket to, bool towardServer)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(16 * 1024);
        try
        {
            while (true)
            {
                if (!link.Dead)
                {
                    await link.WaitWhileHeldAsync();
                }

                int read;
                try
                {
                    read = await from.ReceiveAsync(buffer, _stopping.Token);
                }
                catch (SocketException)
                {
                    read = 0;
                }

                if (read == 0)
                {
                    if (!towardServer && !link.Dropped)
                    {
                        link.ServerClosed = true;
                        if (link.FaultStarted != 0)
                        {
                            link.ServerClosedAfter = Stopwatch.GetElapsedTime(link.FaultStarted);
                        }
                    }

                    return;
                }

                // A pause that began during the read holds these bytes until it ends; a half-open link drops them.
                await link.WaitWhileHeldAsync();
                if (!link.Dead)
                {
                    if (towardServer)
                    {
                        _watch?.DeviceSent(buffer.AsSpan(0, read), newConnection: false);
                    }
                    else
                    {
                        _watch?.ServerSent(buffer.AsSpan(0, read));
                    }

                    await to.SendAsync(buffer.AsMemory(0, read), _stopping.Token);
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // The other side went away, or the proxy stops.
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static void Close(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            // Already closed.
        }

        socket.Dispose();
    }

    /// <summary>The client id of an MQTT CONNECT packet at the start of <paramref name="bytes"/>, or null when it has not all arrived.</summary>
    internal static string? ConnectClientId(ReadOnlySpan<byte> bytes)
    {
        if (bytes.Length < 2 || bytes[0] != 0x10)
        {
            return bytes.Length >= 2 ? "?" : null;
        }

        var at = 1;
        if (!TryReadVarint(bytes, ref at, out _))
        {
            return null;
        }

        if (bytes.Length < at + 10)
        {
            return null;
        }

        var nameLength = (bytes[at] << 8) | bytes[at + 1];
        at += 2 + nameLength;
        if (bytes.Length < at + 4)
        {
            return null;
        }

        var level = bytes[at];
        at += 4; // level, flags, keep alive
        if (level == 5)
        {
            if (!TryReadVarint(bytes, ref at, out var propertiesLength))
            {
                return null;
            }

            at += propertiesLength;
        }

        if (bytes.Length < at + 2)
        {
            return null;
        }

        var idLength = (bytes[at] << 8) | bytes[at + 1];
        return bytes.Length < at + 2 + idLength ? null : Encoding.UTF8.GetString(bytes.Slice(at + 2, idLength));
    }

    /// <summary>MQTT's variable byte integer at <paramref name="at"/> (at most four bytes); false when it has not all arrived or is too long.</summary>
    internal static bool TryReadVarint(ReadOnlySpan<byte> bytes, ref int at, out int value)
    {
        value = 0;
        for (var shift = 0; shift <= 21; shift += 7)
        {
            if (at >= bytes.Length)
            {
                return false;
            }

            var b = bytes[at++];
            value |= (b & 0x7F) << shift;
            if ((b & 0x80) == 0)
            {
                return true;
            }
        }

        return false;
    }

    public async ValueTask DisposeAsync()
    {
        await _stopping.CancelAsync();
        _listener.Stop();
        foreach (var link in _links.Values)
        {
            link.Resume();
            Close(link.Device);
            Close(link.Server);
        }

        await _accepting.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stopping.Dispose();
    }
}
