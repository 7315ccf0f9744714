using System.Data.Common;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Rpc;

/// <summary>A persistent RPC call as stored: the request, where it is (<see cref="Status"/>) and the device's reply.</summary>
/// <param name="RequestId">The id the device sees (<c>v1/devices/me/rpc/request/{id}</c>), counted per device.</param>
/// <param name="Attempts">How often it was sent; every send after the first is a retry.</param>
/// <param name="ResponseJson">The device's reply as JSON text, or an error object for a call that did not succeed.</param>
public sealed record PersistentRpc(
    Guid Id, Guid TenantId, Guid DeviceId, int RequestId, string Method, string ParamsJson, bool OneWay, long TimeoutMs, long ExpirationTime,
    int Retries, int Attempts, RpcStatus Status, string? ResponseJson, string? AdditionalInfoJson, long CreatedTime)
{
    /// <summary>
    /// When its state was last written (epoch ms; for a DELIVERED call, when it was delivered): an owner that takes
    /// the call from the store (after a restart, or on a cluster after the node that sent it died) counts the reply
    /// timeout from here.
    /// </summary>
    public long UpdatedTime { get; init; }
}

/// <summary>Persistent RPC calls, SQL for SQLite and PostgreSQL alike. Every query that a user reaches takes the tenant.</summary>
public interface IRpcStore
{
    Task InsertAsync(PersistentRpc call, CancellationToken cancellationToken = default);

    /// <summary>
    /// Moves a call from state <paramref name="from"/> to <paramref name="status"/> (with its attempts and response);
    /// false when the call is gone (deleted) or is no longer in <paramref name="from"/>: on a cluster another node's
    /// owner of the device may have moved it, and the stored state is the one that counts.
    /// </summary>
    Task<bool> UpdateAsync(Guid id, RpcStatus from, RpcStatus status, int attempts, string? responseJson, CancellationToken cancellationToken = default);

    Task<PersistentRpc?> GetAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default);

    /// <summary>A device's calls, a page at a time; sortable by createdTime (default, newest first), expirationTime, status, method.</summary>
    Task<Page<PersistentRpc>> ListAsync(Guid tenantId, Guid deviceId, RpcStatus? status, PageRequest request, CancellationToken cancellationToken = default);

    Task<bool> DeleteAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default);

    /// <summary>A device's calls that are not final (QUEUED, SENT, DELIVERED), in the order they were made.</summary>
    Task<IReadOnlyList<PersistentRpc>> ListActiveAsync(Guid deviceId, CancellationToken cancellationToken = default);

    /// <summary>The highest request id any stored call of the device has (0 for none).</summary>
    Task<int> MaxRequestIdAsync(Guid deviceId, CancellationToken cancellationToken = default);

    /// <summary>Devices (with their tenant) that have calls not final: after a restart their expiries are armed again.</summary>
    Task<IReadOnlyList<(Guid TenantId, Guid DeviceId)>> DevicesWithActiveCallsAsync(CancellationToken cancellationToken = default);
}

public sealed class SqlRpcStore(PlatformDatabase database, TimeProvider time) : IRpcStore
{
    private const string Columns = "id, tenant_id, device_id, request_id, method, params, oneway, timeout_ms, expiration_time, retries, attempts, status, response, additional_info, created_time";

    // Read with the time of the last change, which the record carries outside its constructor.
    private const string ReadColumns = Columns + ", updated_time";

    private const string ActiveStatuses = "('QUEUED', 'SENT', 'DELIVERED')";

    public async Task InsertAsync(PersistentRpc call, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = $"""
            INSERT INTO rpc_calls ({Columns}, updated_time)
            VALUES (@id, @tenant, @device, @request, @method, @params, @oneway, @timeout, @expiration, @retries, @attempts, @status, @response, @info, @created, @created)
            """;
        command.AddParameter("id", call.Id.ToString());
        command.AddParameter("tenant", call.TenantId.ToString());
        command.AddParameter("device", call.DeviceId.ToString());
        command.AddParameter("request", (long)call.RequestId);
        command.AddParameter("method", call.Method);
        command.AddParameter("params", call.ParamsJson);
        command.AddParameter("oneway", call.OneWay);
        command.AddParameter("timeout", call.TimeoutMs);
        command.AddParameter("expiration", call.ExpirationTime);
        command.AddParameter("retries", (long)call.Retries);
        command.AddParameter("attempts", (long)call.Attempts);
        command.AddParameter("status", call.Status.Name());
        command.AddParameter("response", call.ResponseJson);
        command.AddParameter("info", call.AdditionalInfoJson);
        command.AddParameter("created", call.CreatedTime);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    public async Task<bool> UpdateAsync(Guid id, RpcStatus from, RpcStatus status, int attempts, string? responseJson, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "UPDATE rpc_calls SET status = @status, attempts = @attempts, response = @response, updated_time = @now WHERE id = @id AND status = @from";
        command.AddParameter("id", id.ToString());
        command.AddParameter("from", from.Name());
        command.AddParameter("status", status.Name());
        command.AddParameter("attempts", (long)attempts);
        command.AddParameter("response", responseJson);
        command.AddParameter("now", time.GetUtcNow().ToUnixTimeMilliseconds());
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    public Task<PersistentRpc?> GetAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default) =>
        database.QuerySingleAsync($"SELECT {ReadColumns} FROM rpc_calls WHERE id = @id AND tenant_id = @tenant", c =>
        {
            c.AddParameter("id", id.ToString());
            c.AddParameter("tenant", tenantId.ToString());
        }, Read, cancellationToken);

    public Task<Page<PersistentRpc>> ListAsync(Guid tenantId, Guid deviceId, RpcStatus? status, PageRequest request, CancellationToken cancellationToken = default)
    {
        var where = " WHERE tenant_id = @tenant AND device_id = @device"
            + (status is null ? "" : " AND status = @status")
            + (request.LikePattern is null ? "" : " AND lower(method) LIKE @q ESCAPE '\\'");
        // Newest first unless asked otherwise, as ThingsBoard lists calls; seq keeps calls of one millisecond in order.
        var descending = request.SortProperty is null || request.Descending;
        var direction = descending ? "DESC" : "ASC";
        var column = request.SortProperty switch
        {
            "expirationTime" => "expiration_time",
            "status" => "status",
            "method" => "method",
            "requestId" => "request_id",
            _ => "created_time",
        };
        return database.QueryPageAsync(ReadColumns, "rpc_calls", where, $"{column} {direction}, seq {direction}", request, c =>
        {
            c.AddParameter("tenant", tenantId.ToString());
            c.AddParameter("device", deviceId.ToString());
            if (status is { } s)
            {
                c.AddParameter("status", s.Name());
            }
        }, Read, cancellationToken);
    }

    public async Task<bool> DeleteAsync(Guid tenantId, Guid id, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "DELETE FROM rpc_calls WHERE id = @id AND tenant_id = @tenant";
        command.AddParameter("id", id.ToString());
        command.AddParameter("tenant", tenantId.ToString());
        return await command.ExecuteNonQueryAsync(cancellationToken) > 0;
    }

    public async Task<IReadOnlyList<PersistentRpc>> ListActiveAsync(Guid deviceId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT {ReadColumns} FROM rpc_calls WHERE device_id = @device AND status IN {ActiveStatuses} ORDER BY seq";
        command.AddParameter("device", deviceId.ToString());
        var list = new List<PersistentRpc>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add(Read(reader));
        }

        return list;
    }

    public async Task<int> MaxRequestIdAsync(Guid deviceId, CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = "SELECT MAX(request_id) FROM rpc_calls WHERE device_id = @device";
        command.AddParameter("device", deviceId.ToString());
        var value = await command.ExecuteScalarAsync(cancellationToken);
        return value is null or DBNull ? 0 : Convert.ToInt32(value, System.Globalization.CultureInfo.InvariantCulture);
    }

    public async Task<IReadOnlyList<(Guid TenantId, Guid DeviceId)>> DevicesWithActiveCallsAsync(CancellationToken cancellationToken = default)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        using var command = connection.CreateCommand();
        command.CommandText = $"SELECT DISTINCT tenant_id, device_id FROM rpc_calls WHERE status IN {ActiveStatuses}";
        var list = new List<(Guid, Guid)>();
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        while (await reader.ReadAsync(cancellationToken))
        {
            list.Add((Guid.Parse(reader.GetString(0)), Guid.Parse(reader.GetString(1))));
        }

        return list;
    }

    private static PersistentRpc Read(DbDataReader r) => new(
        Guid.Parse(r.GetString(0)), Guid.Parse(r.GetString(1)), Guid.Parse(r.GetString(2)), Sql.GetInt(r, 3), r.GetString(4), r.GetString(5),
        Sql.GetBool(r, 6), Sql.GetInt64(r, 7), Sql.GetInt64(r, 8), Sql.GetInt(r, 9), Sql.GetInt(r, 10),
        RpcStatusNames.TryParse(r.GetString(11), out var status) ? status : RpcStatus.Failed,
        r.IsDBNull(12) ? null : r.GetString(12), r.IsDBNull(13) ? null : r.GetString(13), Sql.GetInt64(r, 14))
    {
        UpdatedTime = Sql.GetInt64(r, 15),
    };
}
