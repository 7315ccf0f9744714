using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Taihu.Bench.Client;
using Taihu.Mqtt;

namespace Taihu.Bench.Scenarios;

/// <summary>What the create phase of rpc-persistent leaves for the deliver phase (written as JSON with --state).</summary>
public sealed record PersistentRpcState(string RunId, string TenantId, string AdminEmail, string AdminPassword, string[] DeviceIds, string[] Tokens, int CallsPerDevice,
    double CreateSeconds);

/// <summary>
/// rpc-persistent: persistent calls to offline devices, delivered after a server restart. Two phases, so that the
/// server can be stopped and started between them (bench/control.sh does):
/// <list type="number">
/// <item><c>--phase create</c>: a tenant with --clients devices (never connected), and --calls persistent two-way
/// calls to each (<c>"persistent":true</c>, <c>expirationTime</c> an hour ahead, <c>params {"seq":k}</c>), each
/// device's calls made one after another, 16 devices at a time. The state goes to --state.</item>
/// <item><c>--phase deliver</c>: the devices (taihu-bench's own client) connect, subscribe to
/// <c>v1/devices/me/rpc/request/+</c> and answer each command. Measured from the first connect until every call
/// has been received and its reply acknowledged, and until the server has recorded all of them SUCCESSFUL (its
/// audit log counts <c>RPC_SUCCESSFUL</c>); each device must see its calls once each, in order (seq 0, 1, ..).
/// At the end every device's calls are read back through <c>GET /api/rpc/persistent/device/{id}</c>.</item>
/// </list>
/// </summary>
public sealed class PersistentRpcScenario(BenchOptions o, PlatformTarget p, int callsPerDevice, string statePath, IProgress<ProgressReport>? progress)
{
    private static readonly JsonSerializerOptions s_json = new() { PropertyNamingPolicy = JsonNamingPolicy.CamelCase };

    public async Task<BenchResult> CreateAsync(CancellationToken cancellationToken)
    {
        using var http = p.CreateHttpClient(maxConnections: 32);
        var tenant = await BenchTenant.CreateAsync(http, p.AdminUser, p.AdminPassword, cancellationToken);
        var (ids, tokens) = await tenant.CreateDevicesAsync(o.Clients, progress, cancellationToken);
        var expiration = DateTimeOffset.UtcNow.AddHours(1).ToUnixTimeMilliseconds();
        var started = Stopwatch.GetTimestamp();
        var next = -1;
        long created = 0;
        var workers = new Task[16];
        for (var w = 0; w < workers.Length; w++)
        {
            workers[w] = Task.Run(async () =>
            {
                int d;
                while ((d = Interlocked.Increment(ref next)) < ids.Length)
                {
                    for (var k = 0; k < callsPerDevice; k++)
                    {
                        await BenchTenant.SendAsync(http, HttpMethod.Post, tenant.AdminToken, "/api/rpc/twoway/" + ids[d],
                            new { method = "setValue", @params = new { seq = k }, persistent = true, expirationTime = expiration }, cancellationToken);
                        if (Interlocked.Increment(ref created) % 1000 == 0)
                        {
                            progress?.Report(new ProgressReport("creating calls", Stopwatch.GetElapsedTime(started), TimeSpan.FromSeconds(1), Interlocked.Read(ref created), 0, 0));
                        }
                    }
                }
            }, cancellationToken);
        }

        await Task.WhenAll(workers);
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var state = new PersistentRpcState(tenant.RunId, tenant.TenantId, tenant.AdminEmail, tenant.AdminPassword, ids, tokens, callsPerDevice, seconds);
        await File.WriteAllTextAsync(statePath, JsonSerializer.Serialize(state, s_json), cancellationToken);
        var total = (long)ids.Length * callsPerDevice;
        return new BenchResult
        {
            Scenario = "rpc-persistent create",
            Target = p.ApiUrl,
            Protocol = "HTTP",
            DurationSeconds = seconds,
            Sent = total,
            Expected = total,
            Delivered = total,
            DeliveredPerSecond = total / seconds,
            Connections = 32,
            Note = string.Create(CultureInfo.InvariantCulture, $"{total:N0} persistent two-way calls stored for {ids.Length:N0} offline devices in {seconds:F1} s ({total / seconds:N0} calls/s); state in {statePath}"),
        };
    }

    public async Task<BenchResult> DeliverAsync(bool keep, CancellationToken cancellationToken)
    {
        PersistentRpcState? state;
        try
        {
            state = JsonSerializer.Deserialize<PersistentRpcState>(await File.ReadAllTextAsync(statePath, cancellationToken), s_json);
        }
        catch (JsonException e)
        {
            throw new InvalidOperationException($"{statePath} is not a state file of --phase create: {e.Message}", e);
        }

        if (state is not { DeviceIds: not null, Tokens: not null } || state.DeviceIds.Length != state.Tokens.Length || state.CallsPerDevice < 1)
        {
            throw new InvalidOperationException($"{statePath} is not a state file of --phase create: devices, tokens or calls per device are missing.");
        }

        using var http = p.CreateHttpClient(maxConnections: 16);
        var tenant = await BenchTenant.ReopenAsync(http, state.RunId, state.TenantId, p.AdminUser, p.AdminPassword, state.AdminEmail, state.AdminPassword, cancellationToken);
        var devices = state.DeviceIds.Length;
        var total = (long)devices * state.CallsPerDevice;
        var order = new DeliveryOrder(devices, state.CallsPerDevice);
        long lastCommand = 0;
        var started = Stopwatch.GetTimestamp();
        BenchClient[] clients = [];
        try
        {
            var connect = DeviceFleet.ConnectAsync(o, state.RunId, state.Tokens, (device, _, sequence, hasSequence) =>
            {
                order.Record(device, hasSequence ? sequence : -1);
                Volatile.Write(ref lastCommand, Stopwatch.GetTimestamp());
            }, progress, cancellationToken);
            clients = await connect;
            var connectedAt = Stopwatch.GetElapsedTime(started);

            // Every call received and every reply acknowledged, or the deadline.
            var deadline = started + (long)(o.DurationSeconds * Stopwatch.Frequency);
            long acknowledged = 0;
            while (Stopwatch.GetTimestamp() < deadline)
            {
                acknowledged = 0;
                foreach (var client in clients)
                {
                    acknowledged += client.Acknowledged;
                }

                progress?.Report(new ProgressReport("delivering", Stopwatch.GetElapsedTime(started), TimeSpan.FromSeconds(o.DurationSeconds), order.Received, acknowledged, 0));
                if (order.Received >= total && acknowledged >= total)
                {
                    break;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(20), cancellationToken);
            }

            var repliedAt = Stopwatch.GetElapsedTime(started);
            var lastCommandAt = Volatile.Read(ref lastCommand) == 0 ? TimeSpan.Zero : TimeSpan.FromSeconds((double)(lastCommand - started) / Stopwatch.Frequency);

            // The server's own word: RPC_SUCCESSFUL entries in the tenant's audit log.
            long successful = 0;
            while (Stopwatch.GetTimestamp() < deadline)
            {
                var page = await BenchTenant.SendAsync(http, HttpMethod.Get, tenant.AdminToken, "/api/audit/logs?pageSize=1&page=0&textSearch=rpc_successful", null, cancellationToken);
                successful = page.GetProperty("totalElements").GetInt64();
                progress?.Report(new ProgressReport("waiting for SUCCESSFUL", Stopwatch.GetElapsedTime(started), TimeSpan.FromSeconds(o.DurationSeconds), successful, total, 0));
                if (successful >= total)
                {
                    break;
                }

                await Task.Delay(TimeSpan.FromMilliseconds(250), cancellationToken);
            }

            var successfulAt = Stopwatch.GetElapsedTime(started);
            var (readBack, notSuccessful) = await ReadBackAsync(http, tenant.AdminToken, state, cancellationToken);
            var lost = total - Math.Min(readBack, order.InOrder);
            return new BenchResult
            {
                Scenario = "rpc-persistent deliver",
                Target = $"{p.ApiUrl} (devices on {o.Host}:{o.Port})",
                Protocol = o.Version == ProtocolVersion.V500 ? "5.0" : "3.1.1",
                QoS = 1,
                DurationSeconds = successfulAt.TotalSeconds,
                Subscribers = devices,
                Sent = total,
                Expected = total,
                Delivered = order.InOrder,
                Lost = lost,
                Duplicates = order.Duplicates,
                DeliveredPerSecond = order.Received / Math.Max(0.001, lastCommandAt.TotalSeconds),
                Connections = devices,
                Note = string.Create(CultureInfo.InvariantCulture,
                    $"from the first connect: all {devices:N0} devices connected and subscribed at {connectedAt.TotalSeconds:F1} s, last command received at {lastCommandAt.TotalSeconds:F1} s, " +
                    $"every reply acknowledged at {repliedAt.TotalSeconds:F1} s, {successful:N0} of {total:N0} RPC_SUCCESSFUL in the audit log at {successfulAt.TotalSeconds:F1} s; " +
                    $"received {order.Received:N0} commands, {order.InOrder:N0} in order, {order.OutOfOrder:N0} out of order, {order.Duplicates:N0} again, {order.Unexpected:N0} unexpected; " +
                    $"{order.CompleteDevices:N0} of {devices:N0} devices got all {state.CallsPerDevice} in order; read back: {readBack:N0} SUCCESSFUL, {notSuccessful:N0} in another state " +
                    $"(created at {total / state.CreateSeconds:N0} calls/s before the restart)"),
            };
        }
        finally
        {
            await DeviceFleet.DisposeAsync(clients);
            if (!keep)
            {
                await tenant.DeleteAsync();
            }
        }
    }

    /// <summary>Every device's calls through the REST API: how many are SUCCESSFUL, how many are in any other state.</summary>
    private static async Task<(long Successful, long Other)> ReadBackAsync(HttpClient http, string jwt, PersistentRpcState state, CancellationToken cancellationToken)
    {
        long successful = 0;
        long all = 0;
        var next = -1;
        var workers = new Task[8];
        for (var w = 0; w < workers.Length; w++)
        {
            workers[w] = Task.Run(async () =>
            {
                int d;
                while ((d = Interlocked.Increment(ref next)) < state.DeviceIds.Length)
                {
                    var ok = await BenchTenant.SendAsync(http, HttpMethod.Get, jwt, $"/api/rpc/persistent/device/{state.DeviceIds[d]}?pageSize=1&page=0&rpcStatus=SUCCESSFUL", null, cancellationToken);
                    var any = await BenchTenant.SendAsync(http, HttpMethod.Get, jwt, $"/api/rpc/persistent/device/{state.DeviceIds[d]}?pageSize=1&page=0", null, cancellationToken);
                    Interlocked.Add(ref successful, ok.GetProperty("totalElements").GetInt64());
                    Interlocked.Add(ref all, any.GetProperty("totalElements").GetInt64());
                }
            }, cancellationToken);
        }

        await Task.WhenAll(workers);
        return (successful, all - successful);
    }
}
