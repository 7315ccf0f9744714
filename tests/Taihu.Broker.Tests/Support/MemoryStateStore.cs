using System.Threading.Channels;
using Taihu.Broker.Extensibility;

namespace Taihu.Broker.Tests.Support;

/// <summary>
/// An <see cref="IBrokerStateStore"/> in memory that outlives a <see cref="BrokerHost"/>: give the same instance to
/// a second host to see what a restart restores. It copies payloads (the broker's are valid only during the call)
/// and reports every write on a channel, so that tests wait for the write-behind loop instead of sleeping.
/// </summary>
public sealed class MemoryStateStore : IBrokerStateStore
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(10);
    private readonly Lock _gate = new();
    private readonly Dictionary<(string Namespace, string Topic), StoredMessage> _retained = [];
    private readonly Dictionary<SessionKey, StoredSession> _sessions = [];
    private readonly Channel<IReadOnlyList<RetainedChange>> _retainedWrites = Channel.CreateUnbounded<IReadOnlyList<RetainedChange>>();
    private readonly Channel<(IReadOnlyList<StoredSession> Changed, IReadOnlyList<SessionKey> Removed)> _sessionWrites =
        Channel.CreateUnbounded<(IReadOnlyList<StoredSession>, IReadOnlyList<SessionKey>)>();
    private readonly Channel<Exception> _failedWrites = Channel.CreateUnbounded<Exception>();
    private int _failures;

    /// <summary>The next <paramref name="count"/> writes (of either kind) throw, as a database that is down would.</summary>
    public void FailNextWrites(int count) => Interlocked.Exchange(ref _failures, count);

    public IReadOnlyDictionary<(string Namespace, string Topic), StoredMessage> Retained
    {
        get
        {
            lock (_gate)
            {
                return new Dictionary<(string, string), StoredMessage>(_retained);
            }
        }
    }

    public IReadOnlyDictionary<SessionKey, StoredSession> Sessions
    {
        get
        {
            lock (_gate)
            {
                return new Dictionary<SessionKey, StoredSession>(_sessions);
            }
        }
    }

    /// <summary>The changes of the next retained write that succeeded (10 s guard).</summary>
    public async Task<IReadOnlyList<RetainedChange>> NextRetainedWriteAsync() => await _retainedWrites.Reader.ReadAsync().AsTask().WaitAsync(Guard);

    /// <summary>The changes of the next retained write that succeeded within <paramref name="wait"/>, or null.</summary>
    public async Task<IReadOnlyList<RetainedChange>?> TryNextRetainedWriteAsync(TimeSpan wait)
    {
        using var timeout = new CancellationTokenSource(wait);
        try
        {
            return await _retainedWrites.Reader.ReadAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
    }

    /// <summary>The next session write that succeeded (10 s guard).</summary>
    public async Task<(IReadOnlyList<StoredSession> Changed, IReadOnlyList<SessionKey> Removed)> NextSessionWriteAsync() =>
        await _sessionWrites.Reader.ReadAsync().AsTask().WaitAsync(Guard);

    /// <summary>The next write that failed on purpose (see <see cref="FailNextWrites"/>; 10 s guard).</summary>
    public async Task<Exception> NextFailureAsync() => await _failedWrites.Reader.ReadAsync().AsTask().WaitAsync(Guard);

    /// <summary>Whether a write is reported and not yet taken (does not wait).</summary>
    public bool HasPendingWrites => _retainedWrites.Reader.Count > 0 || _sessionWrites.Reader.Count > 0;

    /// <summary>Puts a retained message in place as if a previous run had written it.</summary>
    public void Seed(string ns, StoredMessage message)
    {
        lock (_gate)
        {
            _retained[(ns, message.Topic)] = Copy(message);
        }
    }

    /// <summary>Puts a session in place as if a previous run had written it.</summary>
    public void Seed(StoredSession session)
    {
        lock (_gate)
        {
            _sessions[session.Key] = Copy(session);
        }
    }

    public Task<StoredBrokerState> LoadAsync(CancellationToken cancellationToken)
    {
        lock (_gate)
        {
            return Task.FromResult(new StoredBrokerState
            {
                Retained = [.. _retained.Select(r => new RetainedChange(r.Key.Namespace, r.Key.Topic, Copy(r.Value)))],
                Sessions = [.. _sessions.Values.Select(Copy)],
            });
        }
    }

    public async Task<StoredSession?> LoadSessionAsync(SessionKey key, CancellationToken cancellationToken)
    {
        StoredSession? found;
        lock (_gate)
        {
            found = _sessions.TryGetValue(key, out var session) ? Copy(session) : null;
        }

        if (Interlocked.Exchange(ref _heldLoad, null) is { } hold)
        {
            hold.Started.TrySetResult();
            await hold.Released.Task.WaitAsync(Guard, cancellationToken);
        }

        return found;
    }

    private LoadHold? _heldLoad;

    /// <summary>
    /// The next read of one session (<see cref="LoadSessionAsync"/>) waits, once it has read, until
    /// <see cref="LoadHold.Release"/>: a test does something in between (a client connecting during the read).
    /// </summary>
    public LoadHold HoldNextSessionLoad() => _heldLoad = new LoadHold();

    public sealed class LoadHold
    {
        internal TaskCompletionSource Started { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        internal TaskCompletionSource Released { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        /// <summary>Completes when the held read has read and waits.</summary>
        public Task Reading => Started.Task.WaitAsync(Guard);

        public void Release() => Released.TrySetResult();
    }

    public Task SaveRetainedAsync(IReadOnlyList<RetainedChange> changes, CancellationToken cancellationToken)
    {
        ThrowIfFailing();
        var copied = new List<RetainedChange>();
        lock (_gate)
        {
            foreach (var change in changes)
            {
                var message = change.Message is { } m ? Copy(m) : null;
                copied.Add(change with { Message = message });
                if (message is null)
                {
                    _retained.Remove((change.Namespace, change.Topic));
                }
                else
                {
                    _retained[(change.Namespace, change.Topic)] = message;
                }
            }
        }

        _retainedWrites.Writer.TryWrite(copied);
        return Task.CompletedTask;
    }

    public Task SaveSessionsAsync(IReadOnlyList<StoredSession> changed, IReadOnlyList<SessionKey> removed, CancellationToken cancellationToken)
    {
        ThrowIfFailing();
        var copied = new List<StoredSession>();
        lock (_gate)
        {
            foreach (var key in removed)
            {
                _sessions.Remove(key);
            }

            foreach (var session in changed)
            {
                var copy = Copy(session);
                copied.Add(copy);
                _sessions[session.Key] = copy;
            }
        }

        _sessionWrites.Writer.TryWrite((copied, [.. removed]));
        return Task.CompletedTask;
    }

    private void ThrowIfFailing()
    {
        if (Interlocked.Decrement(ref _failures) >= 0)
        {
            var failure = new InvalidOperationException("The store is down (test).");
            _failedWrites.Writer.TryWrite(failure);
            throw failure;
        }

        Interlocked.Exchange(ref _failures, 0);
    }

    private static StoredMessage Copy(StoredMessage message) => new()
    {
        Topic = message.Topic,
        Payload = message.Payload.ToArray(),
        QoS = message.QoS,
        Retain = message.Retain,
        Properties = message.Properties?.Clone(),
        ReceivedAt = message.ReceivedAt,
    };

    private static StoredSession Copy(StoredSession session) => new()
    {
        Namespace = session.Namespace,
        ClientId = session.ClientId,
        ExpiryInterval = session.ExpiryInterval,
        Subscriptions = [.. session.Subscriptions],
        Deliveries = [.. session.Deliveries.Select(d => d with { Message = Copy(d.Message), SubscriptionIds = d.SubscriptionIds is null ? null : [.. d.SubscriptionIds] })],
        IncomingQoS2 = [.. session.IncomingQoS2],
    };
}
