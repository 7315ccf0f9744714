using Microsoft.Extensions.Hosting;
using Npgsql;
using Orleans.Runtime;
using Taihu.Broker.Extensibility;

namespace Taihu.Cluster.Succession;

/// <summary>
/// The broker's state store on a cluster node: the platform's own (<paramref name="inner"/>), which also records in
/// <c>cluster_sessions</c> which node last wrote each persistent session, so that the node succeeding a dead one
/// knows which sessions were that node's (docs/scaling.md, "When a node dies").
/// </summary>
/// <remarks>
/// Written in the broker's background loop, after the sessions themselves, never on the path of a message. A
/// session written by its new holder after a takeover becomes that node's; one deleted by its holder leaves. A node
/// that stops in order forgets its rows (see <see cref="ForgetThisNodeAsync"/>): its sessions then come back only
/// when their clients connect again, as before.
/// </remarks>
public sealed class ClusterSessionStore(IBrokerStateStore inner, ClusterDatabase database, ILocalSiloDetails local) : IBrokerStateStore
{
    private string? _node;
    private volatile bool _stopped;

    private string Node => _node ??= local.SiloAddress.ToParsableString();

    public Task<StoredBrokerState> LoadAsync(CancellationToken cancellationToken) => inner.LoadAsync(cancellationToken);

    public async Task<StoredSession?> LoadSessionAsync(SessionKey key, CancellationToken cancellationToken)
    {
        var start = System.Diagnostics.Stopwatch.GetTimestamp();
        var session = await inner.LoadSessionAsync(key, cancellationToken);
        Platform.Storage.StageTimings.Since("connect.session", start);
        return session;
    }

    public Task SaveRetainedAsync(IReadOnlyList<RetainedChange> changes, CancellationToken cancellationToken) => inner.SaveRetainedAsync(changes, cancellationToken);

    public async Task SaveSessionsAsync(IReadOnlyList<StoredSession> changed, IReadOnlyList<SessionKey> removed, CancellationToken cancellationToken)
    {
        await inner.SaveSessionsAsync(changed, removed, cancellationToken);
        if (_stopped || (changed.Count == 0 && removed.Count == 0))
        {
            return;
        }

        await using var batch = database.DataSource.CreateBatch();
        var node = Node;
        foreach (var session in changed)
        {
            batch.BatchCommands.Add(Command("""
                INSERT INTO cluster_sessions (ns, session_owner, client_id, node) VALUES ($1, $2, $3, $4)
                ON CONFLICT (ns, session_owner, client_id) DO UPDATE SET node = excluded.node
                """, session.Key, node));
        }

        foreach (var key in removed)
        {
            batch.BatchCommands.Add(Command("DELETE FROM cluster_sessions WHERE ns = $1 AND session_owner = $2 AND client_id = $3 AND node = $4", key, node));
        }

        await batch.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>The sessions <paramref name="node"/> wrote last.</summary>
    public async Task<List<SessionKey>> ListAsync(string node, CancellationToken cancellationToken)
    {
        await using var command = database.DataSource.CreateCommand("SELECT ns, session_owner, client_id FROM cluster_sessions WHERE node = @node");
        command.Parameters.AddWithValue("node", node);
        await using var reader = await command.ExecuteReaderAsync(cancellationToken);
        var keys = new List<SessionKey>();
        while (await reader.ReadAsync(cancellationToken))
        {
            keys.Add(new SessionKey(reader.GetString(0), reader.GetString(2), reader.GetString(1)));
        }

        return keys;
    }

    /// <summary>Makes a session of <paramref name="from"/> this node's (taken over), or drops the row (<paramref name="taken"/> false).</summary>
    public async Task MoveAsync(SessionKey key, string from, bool taken, CancellationToken cancellationToken)
    {
        await using var batch = database.DataSource.CreateBatch();
        batch.BatchCommands.Add(taken
            ? Command("UPDATE cluster_sessions SET node = $4 WHERE ns = $1 AND session_owner = $2 AND client_id = $3 AND node = $5", key, Node, from)
            : Command("DELETE FROM cluster_sessions WHERE ns = $1 AND session_owner = $2 AND client_id = $3 AND node = $4", key, from));
        await batch.ExecuteNonQueryAsync(cancellationToken);
    }

    /// <summary>
    /// Drops the rows of <paramref name="from"/> for <paramref name="keys"/> (sessions live nodes hold now), 500 to a
    /// statement: a dead node's thousands of sessions whose clients connected elsewhere first cost a few statements,
    /// not one each in the middle of their reconnect storm.
    /// </summary>
    public async Task DropAsync(IReadOnlyList<SessionKey> keys, string from, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(keys);
        const int chunk = 500;
        for (var start = 0; start < keys.Count; start += chunk)
        {
            var count = Math.Min(chunk, keys.Count - start);
            var ns = new string[count];
            var owners = new string[count];
            var clients = new string[count];
            for (var i = 0; i < count; i++)
            {
                var key = keys[start + i];
                (ns[i], owners[i], clients[i]) = (key.Namespace, key.Owner, key.ClientId);
            }

            await using var command = database.DataSource.CreateCommand("""
                DELETE FROM cluster_sessions AS s USING unnest(@ns, @owners, @clients) AS k(ns, session_owner, client_id)
                WHERE s.ns = k.ns AND s.session_owner = k.session_owner AND s.client_id = k.client_id AND s.node = @node
                """);
            command.Parameters.AddWithValue("ns", ns);
            command.Parameters.AddWithValue("owners", owners);
            command.Parameters.AddWithValue("clients", clients);
            command.Parameters.AddWithValue("node", from);
            await command.ExecuteNonQueryAsync(cancellationToken);
        }
    }

    /// <summary>At an orderly stop: this node's rows go, and what it writes after is not recorded.</summary>
    public async Task ForgetThisNodeAsync(CancellationToken cancellationToken)
    {
        _stopped = true;
        await using var command = database.DataSource.CreateCommand("DELETE FROM cluster_sessions WHERE node = @node");
        command.Parameters.AddWithValue("node", Node);
        await command.ExecuteNonQueryAsync(cancellationToken);
    }

    private static NpgsqlBatchCommand Command(string sql, SessionKey key, string node, string? other = null)
    {
        var command = new NpgsqlBatchCommand(sql);
        command.Parameters.Add(new NpgsqlParameter { Value = key.Namespace });
        command.Parameters.Add(new NpgsqlParameter { Value = key.Owner });
        command.Parameters.Add(new NpgsqlParameter { Value = key.ClientId });
        command.Parameters.Add(new NpgsqlParameter { Value = node });
        if (other is not null)
        {
            command.Parameters.Add(new NpgsqlParameter { Value = other });
        }

        return command;
    }
}

/// <summary>At an orderly stop, after the broker's last write: this node's sessions are not left to a successor.</summary>
internal sealed class ClusterSessionsAtStop(ClusterSessionStore store) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await store.ForgetThisNodeAsync(cancellationToken);
        }
        catch (Exception e) when (e is NpgsqlException or TimeoutException or OperationCanceledException or InvalidOperationException)
        {
            // Left: the successor then takes these sessions as a dead node's, which is safe (each is claimed first).
        }
    }
}
