using System.Diagnostics;
using Taihu.Protocols.Jt808;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Half-open connections: <c>Jt808:IdleTimeout</c> (2 s here) closes a connection that sends no valid frame for
/// that long; heartbeats keep a terminal's connection open, garbage does not.
/// </summary>
public sealed class Jt808IdleTimeoutTests : IAsyncLifetime
{
    private ServerProcess? _server;
    private PlatformApi? _admin;
    private PlatformApi? _sysAdmin;

    public async Task InitializeAsync()
    {
        _server = await ServerProcess.StartAsync(new Dictionary<string, string> { ["Jt808__IdleTimeout"] = "00:00:02" });
        _sysAdmin = await PlatformApi.SysAdminAsync(_server);
        (_, _admin) = await _sysAdmin.CreateTenantWithAdminAsync("Tenant " + Guid.NewGuid().ToString("N")[..8]);
    }

    public async Task DisposeAsync()
    {
        _admin?.Dispose();
        _sysAdmin?.Dispose();
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }

    [Fact]
    public async Task SilentAndGarbageConnections_AreClosed_WhileAHeartbeatingTerminalStays()
    {
        var server = _server!;
        var before = await Jt808Tests.RejectedAsync(server, "timeout");
        var phone = Jt808Terminal.NewPhone();
        await Jt808Tests.CreateTerminalAsync(_admin!, phone, "code");
        await using var terminal = await Jt808Terminal.ConnectAsync(server, phone);
        Assert.Equal(Jt808Results.Ok, await terminal.AuthenticateAsync("code"));
        await using var silent = await Jt808Terminal.ConnectAsync(server, Jt808Terminal.NewPhone());
        await using var noisy = await Jt808Terminal.ConnectAsync(server, Jt808Terminal.NewPhone());

        // Heartbeat round trips (each waits for its answer) for longer than the timeout; garbage from the other.
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < TimeSpan.FromSeconds(3))
        {
            Assert.Equal(Jt808Results.Ok, await terminal.HeartbeatAsync());
            try
            {
                await noisy.SendRawAsync("AT+GARBAGE\r\n"u8.ToArray());
            }
            catch (IOException)
            {
                // Already closed by the server.
            }
        }

        Assert.True(await silent.ClosedAsync());
        Assert.True(await noisy.ClosedAsync());
        Assert.Equal(Jt808Results.Ok, await terminal.HeartbeatAsync());
        Assert.True(await Jt808Tests.RejectedAboveAsync(server, "timeout", before + 1));
    }
}
