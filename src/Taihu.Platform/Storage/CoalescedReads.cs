namespace Taihu.Platform.Storage;

/// <summary>
/// Reads of one row by its key, made together when many come at once: a read starts at once while fewer than
/// <c>maxReading</c> are running, so a lone read waits for nothing; past that, the keys asked meanwhile wait and
/// go in the next read together (up to <c>maxKeys</c> in one statement), started as soon as a running read ends.
/// </summary>
/// <remarks>
/// <para>
/// Made for connect storms on a cluster node: when a node dies, its devices reconnect to the others within seconds,
/// and each CONNECT looks up the device's credentials (and, on a cluster, its stored session) in PostgreSQL. One
/// statement per CONNECT made the database's per-statement work the limit (docs/benchmarks.md, "The killed node's
/// devices"); one statement for the keys of many CONNECTs does the same reads for a fraction of it.
/// </para>
/// <para>
/// One owner: the waiting keys and the count of running reads change only under this instance's lock, and the lock
/// is never held while reading. A caller's cancellation ends its own wait, not the read, whose answer the other
/// callers of that read still need; an error of the read reaches every caller of it. Callers asking the same key
/// while it waits share one answer.
/// </para>
/// </remarks>
public sealed class CoalescedReads<TKey, TValue>
    where TKey : notnull
    where TValue : class
{
    private readonly Func<IReadOnlyList<TKey>, CancellationToken, Task<IReadOnlyDictionary<TKey, TValue>>> _read;
    private readonly int _maxReading;
    private readonly int _maxKeys;
    private readonly Lock _gate = new();
    private readonly Dictionary<TKey, TaskCompletionSource<TValue?>> _waiting;
    private readonly Queue<TKey> _order = new();
    private readonly string? _stage;
    private int _reading;
    private long _reads;

    /// <param name="read">Reads the rows of the keys given; a key without a row is left out of the answer.</param>
    /// <param name="maxReading">Reads running at once before keys wait for the next one.</param>
    /// <param name="maxKeys">Keys in one read at most.</param>
    /// <param name="comparer">How keys are told apart (ordinal for strings by default).</param>
    /// <param name="stage">When given, each read's time is recorded under this name (<see cref="StageTimings"/>).</param>
    public CoalescedReads(Func<IReadOnlyList<TKey>, CancellationToken, Task<IReadOnlyDictionary<TKey, TValue>>> read, int maxReading, int maxKeys,
        IEqualityComparer<TKey>? comparer = null, string? stage = null)
    {
        ArgumentNullException.ThrowIfNull(read);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxReading, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(maxKeys, 1);
        _read = read;
        _maxReading = maxReading;
        _maxKeys = maxKeys;
        _stage = stage;
        _waiting = new Dictionary<TKey, TaskCompletionSource<TValue?>>(comparer);
    }

    /// <summary>Statements made so far (each read is one), for tests and diagnostics.</summary>
    public long Reads => Interlocked.Read(ref _reads);

    /// <summary>The row of <paramref name="key"/>, or null when there is none.</summary>
    public Task<TValue?> ReadAsync(TKey key, CancellationToken cancellationToken = default)
    {
        TaskCompletionSource<TValue?> answer;
        List<(TKey, TaskCompletionSource<TValue?>)>? batch = null;
        lock (_gate)
        {
            if (!_waiting.TryGetValue(key, out answer!))
            {
                answer = new TaskCompletionSource<TValue?>(TaskCreationOptions.RunContinuationsAsynchronously);
                _waiting.Add(key, answer);
                _order.Enqueue(key);
            }

            if (_reading < _maxReading)
            {
                _reading++;
                batch = TakeWaiting();
            }
        }

        if (batch is not null)
        {
            _ = RunAsync(batch);
        }

        return answer.Task.IsCompleted ? answer.Task : answer.Task.WaitAsync(cancellationToken);
    }

    // Caller holds _gate.
    private List<(TKey, TaskCompletionSource<TValue?>)> TakeWaiting()
    {
        var batch = new List<(TKey, TaskCompletionSource<TValue?>)>(Math.Min(_order.Count, _maxKeys));
        while (batch.Count < _maxKeys && _order.TryDequeue(out var key))
        {
            batch.Add((key, _waiting[key]));
            _waiting.Remove(key);
        }

        return batch;
    }

    private async Task RunAsync(List<(TKey Key, TaskCompletionSource<TValue?> Answer)> batch)
    {
        while (batch.Count > 0)
        {
            Interlocked.Increment(ref _reads);
            try
            {
                var keys = new TKey[batch.Count];
                for (var i = 0; i < keys.Length; i++)
                {
                    keys[i] = batch[i].Key;
                }

                var start = System.Diagnostics.Stopwatch.GetTimestamp();
                var rows = await _read(keys, CancellationToken.None).ConfigureAwait(false);
                if (_stage is not null)
                {
                    StageTimings.Since(_stage, start);
                }

                foreach (var (key, answer) in batch)
                {
                    answer.TrySetResult(rows.TryGetValue(key, out var row) ? row : null);
                }
            }
            catch (Exception e)
            {
                foreach (var (_, answer) in batch)
                {
                    answer.TrySetException(e);
                }
            }

            // The keys that came while this read ran go next, on this same turn; none waiting ends it.
            lock (_gate)
            {
                batch = TakeWaiting();
                if (batch.Count == 0)
                {
                    _reading--;
                }
            }
        }
    }
}
