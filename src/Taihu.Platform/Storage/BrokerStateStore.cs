using System.Data.Common;
using System.Globalization;
using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Platform.Storage;

/// <summary>
/// The broker's retained messages and persistent sessions in the platform database (SQLite or PostgreSQL), so
/// that they survive a restart. The broker calls it from its write-behind loop only (see
/// <see cref="IBrokerStateStore"/>), never on the path of a message; each call is one transaction.
/// <para>
/// A message's properties are kept as the property block of a 5.0 PUBLISH (<see cref="PropertyCodec"/>), and its
/// time of publication in Unix milliseconds, from which its Message Expiry Interval runs. A session is written
/// whole each time it changed: its row, then its subscriptions and its messages (in flight first, then queued,
/// numbered in order) replacing the previous ones.
/// </para>
/// </summary>
public sealed partial class SqlBrokerStateStore(PlatformDatabase database, ILogger<SqlBrokerStateStore> logger) : IBrokerStateStore
{
    public async Task<StoredBrokerState> LoadAsync(CancellationToken cancellationToken)
    {
        await using var connection = await database.OpenAsync(cancellationToken);
        var retained = new List<RetainedChange>();
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT ns, topic, payload, qos, properties, received_time FROM mqtt_retained";
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var ns = reader.GetString(0);
                var topic = reader.GetString(1);
                if (TryReadMessage(reader, topic, payload: 2, qos: 3, retain: -1, properties: 4, receivedTime: 5) is { } message)
                {
                    retained.Add(new RetainedChange(ns, topic, message));
                }
            }
        }

        var stored = await LoadSessionsAsync(connection, keys: null, cancellationToken);
        return new StoredBrokerState { Retained = retained, Sessions = stored };
    }

    /// <remarks>
    /// Asked on a cluster node by each CONNECT whose session no live node holds, which is most of them, and most
    /// find nothing: the asks that come while others are read go to the database together, in one statement that
    /// finds which of them have a session; only those are then read whole.
    /// </remarks>
    public Task<StoredSession?> LoadSessionAsync(SessionKey key, CancellationToken cancellationToken) => SessionReads.ReadAsync(key, cancellationToken);

    private CoalescedReads<SessionKey, StoredSession>? _sessionReads;

    private CoalescedReads<SessionKey, StoredSession> SessionReads =>
        LazyInitializer.EnsureInitialized(ref _sessionReads, () => new CoalescedReads<SessionKey, StoredSession>(ReadSessionsAsync, maxReading: 4, maxKeys: 512, stage: "read.sessions"));

    private async Task<IReadOnlyDictionary<SessionKey, StoredSession>> ReadSessionsAsync(IReadOnlyList<SessionKey> keys, CancellationToken cancellationToken)
    {
        // Three statements for all the keys (sessions, subscriptions, messages), however many of them have a session:
        // in a storm of reconnects after a node's death each found session read whole on its own was what the
        // connects waited for (docs/benchmarks.md, "A killed node declared dead at once").
        await using var connection = await database.OpenAsync(cancellationToken);
        var found = new Dictionary<SessionKey, StoredSession>();
        foreach (var session in await LoadSessionsAsync(connection, keys, cancellationToken))
        {
            found[new SessionKey(session.Namespace, session.ClientId, session.Owner)] = session;
        }

        return found;
    }

    /// <summary>Every stored session (<paramref name="keys"/> null), or those of <paramref name="keys"/> that exist.</summary>
    private async Task<List<StoredSession>> LoadSessionsAsync(DbConnection connection, IReadOnlyList<SessionKey>? keys, CancellationToken cancellationToken)
    {
        var sessions = new Dictionary<SessionKey, SessionRows>();
        using (var command = connection.CreateCommand())
        {
            command.CommandText = "SELECT ns, client_id, expiry_interval, incoming_qos2, session_owner FROM mqtt_sessions" + WhereSessions(command, keys);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var rowKey = new SessionKey(reader.GetString(0), reader.GetString(1), reader.GetString(4));
                sessions[rowKey] = new SessionRows(rowKey, (uint)Math.Clamp(reader.GetInt64(2), 0, uint.MaxValue), ParseIds(reader.GetNullableString(3), static v => ushort.Parse(v, CultureInfo.InvariantCulture)));
            }
        }

        if (keys is not null && sessions.Count == 0)
        {
            // Clients that have no stored session (most connections to a cluster node ask): their subscriptions and
            // messages are written and deleted with their session rows, so there are none to read.
            return [];
        }

        using (var command = connection.CreateCommand())
        {
            command.CommandText = """
                SELECT ns, client_id, topic_filter, qos, no_local, retain_as_published, retain_handling, subscription_id, session_owner
                FROM mqtt_session_subscriptions
                """ + WhereSessions(command, keys) + " ORDER BY ns, session_owner, client_id, topic_filter";
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                if (sessions.TryGetValue(new SessionKey(reader.GetString(0), reader.GetString(1), reader.GetString(8)), out var session))
                {
                    session.Subscriptions.Add(new StoredSubscription(
                        reader.GetString(2),
                        (QoS)Sql.GetInt(reader, 3),
                        Sql.GetBool(reader, 4),
                        Sql.GetBool(reader, 5),
                        (RetainHandling)Sql.GetInt(reader, 6),
                        (uint)reader.GetInt64(7)));
                }
            }
        }

        using (var command = connection.CreateCommand())
        {
            command.CommandText = """
                SELECT ns, client_id, packet_id, released, qos, retain_flag, subscription_ids,
                       topic, payload, message_qos, message_retain, properties, received_time, session_owner
                FROM mqtt_session_messages
                """ + WhereSessions(command, keys) + " ORDER BY ns, session_owner, client_id, seq";
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                if (!sessions.TryGetValue(new SessionKey(reader.GetString(0), reader.GetString(1), reader.GetString(13)), out var session))
                {
                    continue;
                }

                if (TryReadMessage(reader, reader.GetString(7), payload: 8, qos: 9, retain: 10, properties: 11, receivedTime: 12) is not { } message)
                {
                    continue;
                }

                session.Deliveries.Add(new StoredDelivery(
                    message,
                    (QoS)Sql.GetInt(reader, 4),
                    Sql.GetBool(reader, 5),
                    ParseIds(reader.GetNullableString(6), static v => uint.Parse(v, CultureInfo.InvariantCulture)),
                    (ushort)Sql.GetInt(reader, 2),
                    Sql.GetBool(reader, 3)));
            }
        }

        var stored = new List<StoredSession>(sessions.Count);
        foreach (var session in sessions.Values)
        {
            stored.Add(new StoredSession
            {
                Namespace = session.Key.Namespace,
                ClientId = session.Key.ClientId,
                Owner = session.Key.Owner,
                ExpiryInterval = session.ExpiryInterval,
                Subscriptions = session.Subscriptions,
                Deliveries = session.Deliveries,
                IncomingQoS2 = session.IncomingQoS2 ?? [],
            });
        }

        return stored;
    }

    /// <summary>Nothing, or a WHERE clause naming the sessions of <paramref name="keys"/>, their parameters added to <paramref name="command"/>.</summary>
    private static string WhereSessions(DbCommand command, IReadOnlyList<SessionKey>? keys)
    {
        if (keys is null)
        {
            return "";
        }

        var rows = new System.Text.StringBuilder();
        for (var i = 0; i < keys.Count; i++)
        {
            rows.Append(i == 0 ? "" : ", ").Append(CultureInfo.InvariantCulture, $"(@n{i}, @o{i}, @c{i})");
            command.AddParameter($"n{i}", keys[i].Namespace);
            command.AddParameter($"o{i}", keys[i].Owner);
            command.AddParameter($"c{i}", keys[i].ClientId);
        }

        // A row value IN a VALUES list: the form both SQLite and PostgreSQL take.
        return $" WHERE (ns, session_owner, client_id) IN (VALUES {rows})";
    }

    public async Task SaveRetainedAsync(IReadOnlyList<RetainedChange> changes, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(changes);
        if (changes.Count == 0)
        {
            return;
        }

        await using var connection = await database.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        using var upsert = connection.CreateCommand();
        upsert.Transaction = transaction;
        upsert.CommandText = """
            INSERT INTO mqtt_retained (ns, topic, payload, qos, properties, received_time)
            VALUES (@ns, @topic, @payload, @qos, @properties, @t)
            ON CONFLICT (ns, topic) DO UPDATE SET payload = excluded.payload, qos = excluded.qos,
                properties = excluded.properties, received_time = excluded.received_time
            """;
        var ns = upsert.AddParameter("ns", "");
        var topic = upsert.AddParameter("topic", "");
        var payload = upsert.AddParameter("payload", Array.Empty<byte>());
        var qos = upsert.AddParameter("qos", 0);
        var properties = upsert.AddParameter("properties", null);
        var time = upsert.AddParameter("t", 0L);

        using var delete = connection.CreateCommand();
        delete.Transaction = transaction;
        delete.CommandText = "DELETE FROM mqtt_retained WHERE ns = @ns AND topic = @topic";
        var deleteNs = delete.AddParameter("ns", "");
        var deleteTopic = delete.AddParameter("topic", "");

        // In one order of topics for every writer (each node of a cluster writes the retained messages it was
        // given, the same topics at about the same time): see SaveSessionsAsync.
        var ordered = changes.ToArray();
        Array.Sort(ordered, static (x, y) => string.CompareOrdinal(x.Namespace, y.Namespace) is var c && c != 0 ? c : string.CompareOrdinal(x.Topic, y.Topic));
        foreach (var change in ordered)
        {
            if (change.Message is { } message)
            {
                ns.Value = change.Namespace;
                topic.Value = change.Topic;
                payload.Value = ToArray(message.Payload);
                qos.Value = (int)message.QoS;
                properties.Value = (object?)PropertyCodec.EncodeMessageProperties(message.Properties) ?? DBNull.Value;
                time.Value = message.ReceivedAt.ToUnixTimeMilliseconds();
                await upsert.ExecuteNonQueryAsync(cancellationToken);
            }
            else
            {
                deleteNs.Value = change.Namespace;
                deleteTopic.Value = change.Topic;
                await delete.ExecuteNonQueryAsync(cancellationToken);
            }
        }

        await transaction.CommitAsync(cancellationToken);
    }

    public async Task SaveSessionsAsync(IReadOnlyList<StoredSession> changed, IReadOnlyList<SessionKey> removed, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(changed);
        ArgumentNullException.ThrowIfNull(removed);
        if (changed.Count == 0 && removed.Count == 0)
        {
            return;
        }

        await using var connection = await database.OpenAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var commands = new SessionCommands(connection, transaction);
        try
        {
            // In one order of keys for every writer: two nodes writing an overlapping set of sessions (one taking
            // over sessions whose former node still writes them) then lock their rows in the same order, where in
            // their own orders each could hold a row the other waits for, and PostgreSQL would abort one of them
            // as deadlocked (seen in the node-kill benchmark; the round was written again a second later).
            var order = new (SessionKey Key, int Changed)[removed.Count + changed.Count];
            for (var i = 0; i < removed.Count; i++)
            {
                order[i] = (removed[i], -1);
            }

            for (var i = 0; i < changed.Count; i++)
            {
                order[removed.Count + i] = (changed[i].Key, i);
            }

            Array.Sort(order, static (x, y) => CompareKeys(x.Key, y.Key) is var c && c != 0 ? c : x.Changed.CompareTo(y.Changed));
            var savedTime = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();
            foreach (var (key, index) in order)
            {
                if (index < 0)
                {
                    await commands.DeleteAsync(key, includingSession: true, cancellationToken);
                    continue;
                }

                // The session's row before its messages and subscriptions: a second writer of the same session
                // waits on that row until the first commits, then replaces what the first wrote. Deleting the
                // children first locked nothing where there were none yet, so both inserted them (duplicate key).
                var session = changed[index];
                await commands.UpsertSessionAsync(session, savedTime, cancellationToken);
                await commands.DeleteAsync(session.Key, includingSession: false, cancellationToken);
                foreach (var subscription in session.Subscriptions)
                {
                    await commands.InsertSubscriptionAsync(session.Key, subscription, cancellationToken);
                }

                var seq = 0;
                foreach (var delivery in session.Deliveries)
                {
                    await commands.InsertDeliveryAsync(session.Key, seq++, delivery, cancellationToken);
                }
            }

            await commands.FlushAsync(cancellationToken);
        }
        finally
        {
            commands.Dispose();
        }

        await transaction.CommitAsync(cancellationToken);
    }

    /// <summary>The order sessions are written in: ordinal by namespace, owner and client id (any fixed order would do, as long as every writer uses it).</summary>
    private static int CompareKeys(SessionKey x, SessionKey y)
    {
        var c = string.CompareOrdinal(x.Namespace, y.Namespace);
        if (c == 0)
        {
            c = string.CompareOrdinal(x.Owner, y.Owner);
        }

        return c != 0 ? c : string.CompareOrdinal(x.ClientId, y.ClientId);
    }

    /// <summary>A message from a row, or null (logged) when its properties cannot be read.</summary>
    private StoredMessage? TryReadMessage(DbDataReader reader, string topic, int payload, int qos, int retain, int properties, int receivedTime)
    {
        MqttProperties? decoded = null;
        if (!reader.IsDBNull(properties))
        {
            try
            {
                decoded = PropertyCodec.DecodeMessageProperties(reader.GetFieldValue<byte[]>(properties));
            }
            catch (MqttProtocolException e)
            {
                LogUnreadableMessage(logger, topic, e);
                return null;
            }
        }

        return new StoredMessage
        {
            Topic = topic,
            Payload = reader.IsDBNull(payload) ? Array.Empty<byte>() : reader.GetFieldValue<byte[]>(payload),
            QoS = (QoS)Sql.GetInt(reader, qos),
            Retain = retain < 0 || Sql.GetBool(reader, retain),
            Properties = decoded,
            ReceivedAt = DateTimeOffset.FromUnixTimeMilliseconds(reader.GetInt64(receivedTime)),
        };
    }

    /// <summary>The payload as a whole array (ADO.NET providers take byte[] for blobs), copied only when it is a slice.</summary>
    private static byte[] ToArray(ReadOnlyMemory<byte> payload) =>
        MemoryMarshal.TryGetArray(payload, out var segment) && segment.Offset == 0 && segment.Count == segment.Array!.Length
            ? segment.Array
            : payload.ToArray();

    private static string? FormatIds<T>(IReadOnlyList<T>? ids)
        where T : IFormattable =>
        ids is not { Count: > 0 } ? null : string.Join(',', ids.Select(id => id.ToString(null, CultureInfo.InvariantCulture)));

    private static List<T>? ParseIds<T>(string? text, Func<string, T> parse) =>
        string.IsNullOrEmpty(text) ? null : [.. text.Split(',').Select(parse)];

    [LoggerMessage(EventId = 2601, Level = LogLevel.Warning, Message = "A stored MQTT message on {Topic} has unreadable properties; it is left out")]
    private static partial void LogUnreadableMessage(ILogger logger, string topic, Exception exception);

    private sealed class SessionRows(SessionKey key, uint expiryInterval, List<ushort>? incomingQoS2)
    {
        public SessionKey Key { get; } = key;
        public uint ExpiryInterval { get; } = expiryInterval;
        public List<ushort>? IncomingQoS2 { get; } = incomingQoS2;
        public List<StoredSubscription> Subscriptions { get; } = [];
        public List<StoredDelivery> Deliveries { get; } = [];
    }

    /// <summary>The commands one session save reuses for every session, prepared once per transaction.</summary>
    /// <remarks>
    /// Where the provider sends many statements in one round trip (PostgreSQL), they go in batches of
    /// <see cref="MaxBatch"/>, in order, in the same transaction: a node that took over 5,000 sessions after another
    /// died wrote them with three to four statements each, one round trip apiece (about 20,000 in a row on a node
    /// short of CPU, each answer waiting its turn on the thread pool). SQLite runs in the process: each statement at once.
    /// </remarks>
    private sealed class SessionCommands : IDisposable
    {
        private const int MaxBatch = 500;
        private readonly DbBatch? _batch;
        private readonly DbCommand _deleteMessages;
        private readonly DbCommand _deleteSubscriptions;
        private readonly DbCommand _deleteSession;
        private readonly DbCommand _upsertSession;
        private readonly DbCommand _insertSubscription;
        private readonly DbCommand _insertDelivery;

        public SessionCommands(DbConnection connection, DbTransaction transaction)
        {
            if (connection.CanCreateBatch)
            {
                _batch = connection.CreateBatch();
                _batch.Transaction = transaction;
            }

            _deleteMessages = Create(connection, transaction, "DELETE FROM mqtt_session_messages WHERE ns = @ns AND session_owner = @owner AND client_id = @client");
            _deleteSubscriptions = Create(connection, transaction, "DELETE FROM mqtt_session_subscriptions WHERE ns = @ns AND session_owner = @owner AND client_id = @client");
            _deleteSession = Create(connection, transaction, "DELETE FROM mqtt_sessions WHERE ns = @ns AND session_owner = @owner AND client_id = @client");
            foreach (var command in new[] { _deleteMessages, _deleteSubscriptions, _deleteSession })
            {
                command.AddParameter("ns", "");
                command.AddParameter("owner", "");
                command.AddParameter("client", "");
            }

            _upsertSession = Create(connection, transaction, """
                INSERT INTO mqtt_sessions (ns, session_owner, client_id, expiry_interval, incoming_qos2, saved_time)
                VALUES (@ns, @owner, @client, @expiry, @incoming, @t)
                ON CONFLICT (ns, session_owner, client_id) DO UPDATE SET expiry_interval = excluded.expiry_interval,
                    incoming_qos2 = excluded.incoming_qos2, saved_time = excluded.saved_time
                """);
            _upsertSession.AddParameter("ns", "");
            _upsertSession.AddParameter("owner", "");
            _upsertSession.AddParameter("client", "");
            _upsertSession.AddParameter("expiry", 0L);
            _upsertSession.AddParameter("incoming", null);
            _upsertSession.AddParameter("t", 0L);

            _insertSubscription = Create(connection, transaction, """
                INSERT INTO mqtt_session_subscriptions (ns, session_owner, client_id, topic_filter, qos, no_local, retain_as_published, retain_handling, subscription_id)
                VALUES (@ns, @owner, @client, @filter, @qos, @noLocal, @rap, @rh, @sid)
                """);
            _insertSubscription.AddParameter("ns", "");
            _insertSubscription.AddParameter("owner", "");
            _insertSubscription.AddParameter("client", "");
            _insertSubscription.AddParameter("filter", "");
            _insertSubscription.AddParameter("qos", 0);
            _insertSubscription.AddParameter("noLocal", false);
            _insertSubscription.AddParameter("rap", false);
            _insertSubscription.AddParameter("rh", 0);
            _insertSubscription.AddParameter("sid", 0L);

            _insertDelivery = Create(connection, transaction, """
                INSERT INTO mqtt_session_messages (ns, session_owner, client_id, seq, packet_id, released, qos, retain_flag, subscription_ids,
                    topic, payload, message_qos, message_retain, properties, received_time)
                VALUES (@ns, @owner, @client, @seq, @packetId, @released, @qos, @retain, @ids, @topic, @payload, @messageQos, @messageRetain, @properties, @t)
                """);
            _insertDelivery.AddParameter("ns", "");
            _insertDelivery.AddParameter("owner", "");
            _insertDelivery.AddParameter("client", "");
            _insertDelivery.AddParameter("seq", 0);
            _insertDelivery.AddParameter("packetId", 0);
            _insertDelivery.AddParameter("released", false);
            _insertDelivery.AddParameter("qos", 0);
            _insertDelivery.AddParameter("retain", false);
            _insertDelivery.AddParameter("ids", null);
            _insertDelivery.AddParameter("topic", "");
            _insertDelivery.AddParameter("payload", Array.Empty<byte>());
            _insertDelivery.AddParameter("messageQos", 0);
            _insertDelivery.AddParameter("messageRetain", false);
            _insertDelivery.AddParameter("properties", null);
            _insertDelivery.AddParameter("t", 0L);
        }

        public async Task DeleteAsync(SessionKey key, bool includingSession, CancellationToken cancellationToken)
        {
            // The session's row first: it is what two writers of one session meet on (see SaveSessionsAsync).
            foreach (var command in includingSession ? new[] { _deleteSession, _deleteMessages, _deleteSubscriptions } : [_deleteMessages, _deleteSubscriptions])
            {
                command.Parameters["@ns"].Value = key.Namespace;
                command.Parameters["@owner"].Value = key.Owner;
                command.Parameters["@client"].Value = key.ClientId;
                await RunAsync(command, cancellationToken);
            }
        }

        public async Task UpsertSessionAsync(StoredSession session, long savedTime, CancellationToken cancellationToken)
        {
            var p = _upsertSession.Parameters;
            p["@ns"].Value = session.Namespace;
            p["@owner"].Value = session.Owner;
            p["@client"].Value = session.ClientId;
            p["@expiry"].Value = (long)session.ExpiryInterval;
            p["@incoming"].Value = (object?)FormatIds(session.IncomingQoS2) ?? DBNull.Value;
            p["@t"].Value = savedTime;
            await RunAsync(_upsertSession, cancellationToken);
        }

        public async Task InsertSubscriptionAsync(SessionKey key, StoredSubscription subscription, CancellationToken cancellationToken)
        {
            var p = _insertSubscription.Parameters;
            p["@ns"].Value = key.Namespace;
            p["@owner"].Value = key.Owner;
            p["@client"].Value = key.ClientId;
            p["@filter"].Value = subscription.Filter;
            p["@qos"].Value = (int)subscription.QoS;
            p["@noLocal"].Value = subscription.NoLocal;
            p["@rap"].Value = subscription.RetainAsPublished;
            p["@rh"].Value = (int)subscription.RetainHandling;
            p["@sid"].Value = (long)subscription.SubscriptionId;
            await RunAsync(_insertSubscription, cancellationToken);
        }

        public async Task InsertDeliveryAsync(SessionKey key, int seq, StoredDelivery delivery, CancellationToken cancellationToken)
        {
            var message = delivery.Message;
            var p = _insertDelivery.Parameters;
            p["@ns"].Value = key.Namespace;
            p["@owner"].Value = key.Owner;
            p["@client"].Value = key.ClientId;
            p["@seq"].Value = seq;
            p["@packetId"].Value = (int)delivery.PacketId;
            p["@released"].Value = delivery.Released;
            p["@qos"].Value = (int)delivery.QoS;
            p["@retain"].Value = delivery.Retain;
            p["@ids"].Value = (object?)FormatIds(delivery.SubscriptionIds) ?? DBNull.Value;
            p["@topic"].Value = message.Topic;
            p["@payload"].Value = ToArray(message.Payload);
            p["@messageQos"].Value = (int)message.QoS;
            p["@messageRetain"].Value = message.Retain;
            p["@properties"].Value = (object?)PropertyCodec.EncodeMessageProperties(message.Properties) ?? DBNull.Value;
            p["@t"].Value = message.ReceivedAt.ToUnixTimeMilliseconds();
            await RunAsync(_insertDelivery, cancellationToken);
        }

        /// <summary>Runs the command as its parameters are now: at once, or added to the batch (sent when full).</summary>
        private async Task RunAsync(DbCommand command, CancellationToken cancellationToken)
        {
            if (_batch is null)
            {
                await command.ExecuteNonQueryAsync(cancellationToken);
                return;
            }

            var added = _batch.CreateBatchCommand();
            added.CommandText = command.CommandText;
            foreach (DbParameter parameter in command.Parameters)
            {
                var copy = added.CreateParameter();
                copy.ParameterName = parameter.ParameterName;
                copy.Value = parameter.Value;
                added.Parameters.Add(copy);
            }

            _batch.BatchCommands.Add(added);
            if (_batch.BatchCommands.Count >= MaxBatch)
            {
                await FlushAsync(cancellationToken);
            }
        }

        /// <summary>Sends what the batch holds; called before the transaction commits.</summary>
        public async Task FlushAsync(CancellationToken cancellationToken)
        {
            if (_batch is { BatchCommands.Count: > 0 } batch)
            {
                await batch.ExecuteNonQueryAsync(cancellationToken);
                batch.BatchCommands.Clear();
            }
        }

        public void Dispose()
        {
            _batch?.Dispose();
            _deleteMessages.Dispose();
            _deleteSubscriptions.Dispose();
            _deleteSession.Dispose();
            _upsertSession.Dispose();
            _insertSubscription.Dispose();
            _insertDelivery.Dispose();
        }

        private static DbCommand Create(DbConnection connection, DbTransaction transaction, string sql)
        {
            var command = connection.CreateCommand();
            command.Transaction = transaction;
            command.CommandText = sql;
            return command;
        }
    }
}
