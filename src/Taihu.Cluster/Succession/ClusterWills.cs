using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Npgsql;
using NpgsqlTypes;
using Orleans.Runtime;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Cluster.Succession;

/// <summary>
/// The wills of this node's connected clients, kept in <c>cluster_wills</c> so that the node succeeding this one
/// can send them should this node die (docs/scaling.md, "When a node dies").
/// </summary>
/// <remarks>
/// Only a CONNECT that carries a will writes (one row, replaced by the client's next will wherever it connects),
/// and only the end of such a will (sent, or dropped by a normal DISCONNECT or a reconnection) deletes it: a client
/// without a will costs nothing here. The broker hands the changes over without waiting; one loop writes them, in
/// the order given, so that a delete never overtakes the write it follows. A delete names this node, so a late
/// one never removes the row of a client that has since connected to another node. A node that stops in order
/// deletes all its rows: it has sent or dropped its wills itself, as a single server does.
/// </remarks>
public sealed partial class ClusterWills : BackgroundService
{
    private readonly ClusterDatabase _database;
    private readonly ILocalSiloDetails _local;
    private readonly ILogger<ClusterWills> _logger;
    private readonly Channel<Change> _changes = Channel.CreateUnbounded<Change>(new UnboundedChannelOptions { SingleReader = true });
    private string? _node;

    public ClusterWills(ClusterDatabase database, ILocalSiloDetails local, ILogger<ClusterWills> logger)
    {
        _database = database;
        _local = local;
        _logger = logger;
    }

    /// <summary>This node as the rows name it (address, port and generation).</summary>
    public string Node => _node ??= _local.SiloAddress.ToParsableString();

    public void Set(string ns, string owner, string clientId, string topic, ReadOnlySpan<byte> payload, QoS qos, bool retain, MqttProperties? properties, uint delay) =>
        _changes.Writer.TryWrite(new Change(ns, owner, clientId, new StoredWill(topic, payload.ToArray(), qos, retain, PropertyCodec.EncodeMessageProperties(properties), delay)));

    public void Done(string ns, string owner, string clientId) => _changes.Writer.TryWrite(new Change(ns, owner, clientId, null));

    /// <summary>The wills <paramref name="node"/> held, oldest connection first.</summary>
    public async Task<List<WillRow>> ListAsync(string node, CancellationToken cancellationToken)
    {
        await using var command = _database.DataSource.CreateCommand(
            "SELECT ns, session_owner, client_id, topic, payload, qos, retain, properties, delay_seconds, connected_time FROM cluster_wills WHERE node = @node ORDER BY connected_time");
        command.Parameters.AddWithValue("node", node);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var rows = new List<WillRow>();
        while (await reader.ReadAsync(cancellationToken))
        {
            rows.Add(new WillRow(new SessionKey(reader.GetString(0), reader.GetString(2), reader.GetString(1)),
                new StoredWill(reader.GetString(3), reader.GetFieldValue<byte[]>(4), (QoS)reader.GetInt16(5), reader.GetBoolean(6),
                    reader.IsDBNull(7) ? null : reader.GetFieldValue<byte[]>(7), (uint)Math.Clamp(reader.GetInt64(8), 0, uint.MaxValue)),
                reader.GetFieldValue<DateTimeOffset>(9)));
        }

        return rows;
    }

    /// <summary>
    /// Moves a will of dead node <paramref name="from"/> to this node, which sends it at its time; false when the row
    /// is no longer that node's (the client connected elsewhere with a will since).
    /// </summary>
    public async Task<bool> TakeAsync(WillRow row, string from, CancellationToken cancellationToken)
    {
        await using var command = _database.DataSource.CreateCommand(
            "UPDATE cluster_wills SET node = @self WHERE ns = @ns AND session_owner = @owner AND client_id = @client AND node = @from AND connected_time = @connected");
        AddKey(command, row.Key);
        command.Parameters.AddWithValue("self", Node);
        command.Parameters.AddWithValue("from", from);
        command.Parameters.AddWithValue("connected", row.ConnectedTime);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    /// <summary>
    /// Deletes a will this node took over, when it is still the one taken (not replaced by the client's next
    /// connection, nor deleted by this node's handling of it): true when it was, and it may be sent.
    /// </summary>
    public async Task<bool> RemoveTakenAsync(WillRow row, CancellationToken cancellationToken)
    {
        await using var command = _database.DataSource.CreateCommand(
            "DELETE FROM cluster_wills WHERE ns = @ns AND session_owner = @owner AND client_id = @client AND node = @self AND connected_time = @connected");
        AddKey(command, row.Key);
        command.Parameters.AddWithValue("self", Node);
        command.Parameters.AddWithValue("connected", row.ConnectedTime);
        return await command.ExecuteNonQueryAsync(cancellationToken) == 1;
    }

    /// <summary>Nodes that hold wills or sessions in the cluster's tables.</summary>
    public async Task<List<string>> NodesWithRowsAsync(CancellationToken cancellationToken)
    {
        await using var command = _database.DataSource.CreateCommand("SELECT node FROM cluster_wills UNION SELECT node FROM cluster_sessions");
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var nodes = new List<string>();
        while (await reader.ReadAsync(cancellationToken))
        {
            nodes.Add(reader.GetString(0));
        }

        return nodes;
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var reader = _changes.Reader;
        try
        {
            while (await reader.WaitToReadAsync(stoppingToken))
            {
                while (reader.TryPeek(out var change))
                {
                    try
                    {
                        await WriteAsync(change, stoppingToken);
                    }
                    catch (Exception e) when (e is NpgsqlException or TimeoutException)
                    {
                        // Kept first in line and written again: a will lost here would be lost with this node.
                        LogWriteFailed(_logger, e);
                        await Task.Delay(TimeSpan.FromSeconds(1), stoppingToken);
                        continue;
                    }

                    reader.TryRead(out _);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    public override async Task StopAsync(CancellationToken cancellationToken)
    {
        _changes.Writer.TryComplete();
        await base.StopAsync(cancellationToken);
        // Stopping in order: this node's wills have been sent or dropped by it (its connections are closed), and
        // none is left for a successor.
        try
        {
            await using var command = _database.DataSource.CreateCommand("DELETE FROM cluster_wills WHERE node = @node");
            command.Parameters.AddWithValue("node", Node);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or OperationCanceledException or InvalidOperationException)
        {
            LogStopDeleteFailed(_logger, e);
        }
    }

    private async Task WriteAsync(Change change, CancellationToken cancellationToken)
    {
        await using var command = _database.DataSource.CreateCommand();
        AddKey(command, new SessionKey(change.Namespace, change.ClientId, change.Owner));
        command.Parameters.AddWithValue("node", Node);
        if (change.Will is not { } will)
        {
            command.CommandText = "DELETE FROM cluster_wills WHERE ns = @ns AND session_owner = @owner AND client_id = @client AND node = @node";
        }
        else
        {
            command.CommandText = """
                INSERT INTO cluster_wills (ns, session_owner, client_id, node, topic, payload, qos, retain, properties, delay_seconds, connected_time)
                VALUES (@ns, @owner, @client, @node, @topic, @payload, @qos, @retain, @properties, @delay, clock_timestamp())
                ON CONFLICT (ns, session_owner, client_id) DO UPDATE SET node = excluded.node, topic = excluded.topic, payload = excluded.payload,
                    qos = excluded.qos, retain = excluded.retain, properties = excluded.properties, delay_seconds = excluded.delay_seconds,
                    connected_time = excluded.connected_time
                """;
            command.Parameters.AddWithValue("topic", will.Topic);
            command.Parameters.AddWithValue("payload", will.Payload);
            command.Parameters.AddWithValue("qos", (short)will.QoS);
            command.Parameters.AddWithValue("retain", will.Retain);
            command.Parameters.Add(new NpgsqlParameter("properties", NpgsqlDbType.Bytea) { Value = (object?)will.Properties ?? DBNull.Value });
            command.Parameters.AddWithValue("delay", (long)will.Delay);
        }

        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static void AddKey(NpgsqlCommand command, SessionKey key)
    {
        command.Parameters.AddWithValue("ns", key.Namespace);
        command.Parameters.AddWithValue("owner", key.Owner);
        command.Parameters.AddWithValue("client", key.ClientId);
    }

    private sealed record Change(string Namespace, string Owner, string ClientId, StoredWill? Will);

    [LoggerMessage(EventId = 2651, Level = LogLevel.Warning, Message = "Writing a client's will to the cluster's table failed; it is written again")]
    private static partial void LogWriteFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 2652, Level = LogLevel.Warning, Message = "Deleting this node's wills from the cluster's table at stop failed; the node succeeding it skips those of clients connected elsewhere")]
    private static partial void LogStopDeleteFailed(ILogger logger, Exception exception);
}

/// <summary>A will as kept in <c>cluster_wills</c>: topic in the broker's topic space, properties as <see cref="PropertyCodec"/> encodes them.</summary>
public sealed record StoredWill(string Topic, byte[] Payload, QoS QoS, bool Retain, byte[]? Properties, uint Delay);

/// <summary>One row of <c>cluster_wills</c>; <paramref name="ConnectedTime"/> tells one connection's will from the next.</summary>
public sealed record WillRow(SessionKey Key, StoredWill Will, DateTimeOffset ConnectedTime);
