using System.Buffers;
using System.Text.Json;
using Microsoft.Extensions.Options;
using Taihu.Platform.Events;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Integrations;

/// <summary>
/// The event consumer <c>integrations</c>: for each event and each enabled integration of its tenant whose filter
/// matches, an outbox row holding the body as it will be sent, all in one transaction with the consumer's cursor, so
/// an event is in the outbox exactly when the cursor has passed it (nothing lost across a crash). It never talks to
/// a target: delivery is <see cref="IntegrationDelivery"/>'s, so a slow or dead target never holds this back (nor
/// ingest, which does not wait for any consumer). An outbox at its limit dead-letters the event ("outbox full").
/// </summary>
public sealed class IntegrationOutbox(PlatformDatabase database, IntegrationRegistry registry, IOptions<IntegrationOptions> options, TimeProvider time) : IEventConsumer
{
    public const string ConsumerName = "integrations";
    public const string OutboxFull = "outbox full";

    private readonly ArrayBufferWriter<byte> _buffer = new(1024);

    public string Name => ConsumerName;

    public async Task ConsumeAsync(IReadOnlyList<PlatformEvent> events, long position, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(events);
        var snapshot = await registry.GetAsync(cancellationToken);
        var limit = options.Value.MaxOutboxEvents;
        var now = time.GetUtcNow().ToUnixTimeMilliseconds();
        Dictionary<IntegrationState, long>? added = null;
        List<IntegrationState>? fullDead = null;
        await using var connection = await database.OpenAsync(cancellationToken);
        var stage = System.Diagnostics.Stopwatch.GetTimestamp();
        // In turn with ingest and the alarm writer (PlatformDatabase.TakeWriteTurnAsync): this runs after every commit.
        using var turn = await database.TakeWriteTurnAsync(cancellationToken);
        await using var transaction = await connection.BeginTransactionAsync(cancellationToken);
        var held = stage = StageTimings.Since("outbox.begin", stage);
        DbCommandHolder commands = default;
        try
        {
            for (var e = 0; e < events.Count; e++)
            {
                var ev = events[e];
                if (!snapshot.ByTenant.TryGetValue(ev.Device.TenantId, out var targets))
                {
                    continue;
                }

                byte[]? body = null;
                for (var t = 0; t < targets.Length; t++)
                {
                    var target = targets[t];
                    if (!target.Filter.Matches(ev))
                    {
                        continue;
                    }

                    body ??= Render(ev);
                    added ??= [];
                    var pending = added.GetValueOrDefault(target);
                    var full = target.OutboxCount + pending >= limit;
                    var command = full ? commands.Dead(connection, transaction) : commands.Outbox(connection, transaction);
                    SqlIntegrationStore.SetRow(command, target.Integration.Id, ev.Device.Id.ToString(), ev.Device.Name, ev.Device.Type,
                        PlatformEventTypes.Name(ev.Type), body, ev.Committed != 0 ? ev.Committed : now);
                    if (full)
                    {
                        SqlIntegrationStore.SetDead(command, OutboxFull, 0, 0, now);
                    }
                    else
                    {
                        added[target] = pending + 1;
                    }

                    await command.ExecuteNonQueryAsync(cancellationToken);
                    if (full)
                    {
                        (fullDead ??= []).Add(target);
                    }
                }
            }

            if (fullDead is not null)
            {
                foreach (var target in fullDead.Distinct())
                {
                    await SqlIntegrationStore.CountAsync(connection, transaction, target.Integration.Id, 0, 0, fullDead.Count(t => t == target), cancellationToken);
                }
            }

            await EventLog.SaveCursorAsync(connection, transaction, Name, position, cancellationToken);
            await transaction.CommitAsync(cancellationToken);
            StageTimings.Since("outbox.hold", held);
        }
        finally
        {
            commands.Dispose();
        }

        if (fullDead is not null)
        {
            foreach (var target in fullDead)
            {
                target.CountDead();
            }
        }

        if (added is not null)
        {
            foreach (var (target, count) in added)
            {
                target.AddOutbox(count);
                target.Signal();
            }
        }
    }

    /// <summary>The body sent for an event: <c>{"id","ts","tenantId","deviceId","deviceName","type","data"}</c>.</summary>
    public byte[] Render(PlatformEvent ev)
    {
        ArgumentNullException.ThrowIfNull(ev);
        _buffer.ResetWrittenCount();
        using (var writer = new Utf8JsonWriter(_buffer))
        {
            WriteEvent(writer, ev);
        }

        return _buffer.WrittenSpan.ToArray();
    }

    public static void WriteEvent(Utf8JsonWriter writer, PlatformEvent ev)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentNullException.ThrowIfNull(ev);
        writer.WriteStartObject();
        writer.WriteString("id", ev.Id);
        writer.WriteNumber("ts", ev.Ts);
        writer.WriteString("tenantId", ev.Device.TenantId);
        writer.WriteString("deviceId", ev.Device.Id);
        writer.WriteString("deviceName", ev.Device.Name);
        writer.WriteString("type", PlatformEventTypes.Name(ev.Type));
        writer.WritePropertyName("data");
        ev.WriteData(writer);
        writer.WriteEndObject();
    }

    /// <summary>The two prepared inserts of one call, made when first needed.</summary>
    private struct DbCommandHolder : IDisposable
    {
        private System.Data.Common.DbCommand? _outbox;
        private System.Data.Common.DbCommand? _dead;

        public System.Data.Common.DbCommand Outbox(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction t) =>
            _outbox ??= SqlIntegrationStore.PrepareOutboxInsert(c, t);

        public System.Data.Common.DbCommand Dead(System.Data.Common.DbConnection c, System.Data.Common.DbTransaction t) =>
            _dead ??= SqlIntegrationStore.PrepareDeadLetterInsert(c, t);

        public readonly void Dispose()
        {
            _outbox?.Dispose();
            _dead?.Dispose();
        }
    }
}
