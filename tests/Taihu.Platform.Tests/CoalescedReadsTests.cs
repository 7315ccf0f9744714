using Taihu.Platform.Storage;

namespace Taihu.Platform.Tests;

/// <summary>
/// Reads that come while others run go together. Each read here waits for an explicit signal (its gate), so the
/// tests say exactly which reads are running when a key is asked; no timing is involved.
/// </summary>
public sealed class CoalescedReadsTests
{
    private sealed class Store
    {
        public List<string[]> Reads { get; } = [];

        public Queue<TaskCompletionSource> Gates { get; } = new();

        public Exception? Fail { get; set; }

        public async Task<IReadOnlyDictionary<string, string>> ReadAsync(IReadOnlyList<string> keys, CancellationToken cancellationToken)
        {
            var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            lock (this)
            {
                Reads.Add([.. keys]);
                Gates.Enqueue(gate);
            }

            await gate.Task;
            if (Fail is { } failure)
            {
                throw failure;
            }

            var rows = new Dictionary<string, string>();
            foreach (var key in keys)
            {
                if (!key.StartsWith("missing", StringComparison.Ordinal))
                {
                    rows[key] = "row of " + key;
                }
            }

            return rows;
        }

        public void Open()
        {
            lock (this)
            {
                Gates.Dequeue().SetResult();
            }
        }
    }

    [Fact]
    public async Task ALoneRead_GoesAtOnce_WithItsKeyAlone()
    {
        var store = new Store();
        var reads = new CoalescedReads<string, string>(store.ReadAsync, maxReading: 2, maxKeys: 10);

        var read = reads.ReadAsync("a");
        Assert.Equal(["a"], Assert.Single(store.Reads));
        store.Open();

        Assert.Equal("row of a", await read);
        Assert.Equal(1, reads.Reads);
    }

    [Fact]
    public async Task KeysAskedWhileReadsRun_GoTogetherInTheNextRead_EachWithItsOwnAnswer()
    {
        var store = new Store();
        var reads = new CoalescedReads<string, string>(store.ReadAsync, maxReading: 1, maxKeys: 10);

        var first = reads.ReadAsync("a");
        var waiting = new[] { reads.ReadAsync("b"), reads.ReadAsync("missing-1"), reads.ReadAsync("c"), reads.ReadAsync("b") };
        Assert.Single(store.Reads);
        Assert.All(waiting, task => Assert.False(task.IsCompleted));

        store.Open();
        Assert.Equal("row of a", await first);
        // The first read's end starts the next with every key that waited, each once, in the order asked.
        await WaitForReadsAsync(store, 2);
        Assert.Equal(["b", "missing-1", "c"], store.Reads[1]);
        store.Open();

        Assert.Equal(new string?[] { "row of b", null, "row of c", "row of b" }, await Task.WhenAll(waiting));
        Assert.Equal(2, reads.Reads);
    }

    [Fact]
    public async Task NoMoreThanMaxKeys_GoInOneRead()
    {
        var store = new Store();
        var reads = new CoalescedReads<string, string>(store.ReadAsync, maxReading: 1, maxKeys: 2);

        var all = new[] { reads.ReadAsync("a"), reads.ReadAsync("b"), reads.ReadAsync("c"), reads.ReadAsync("d"), reads.ReadAsync("e") };
        for (var i = 1; i <= 3; i++)
        {
            await WaitForReadsAsync(store, i);
            store.Open();
        }

        Assert.Equal(new string?[] { "row of a", "row of b", "row of c", "row of d", "row of e" }, await Task.WhenAll(all));
        Assert.Equal([["a"], ["b", "c"], ["d", "e"]], store.Reads);
    }

    [Fact]
    public async Task AFailedRead_FailsItsOwnCallers_AndTheNextReadWorks()
    {
        var store = new Store();
        var reads = new CoalescedReads<string, string>(store.ReadAsync, maxReading: 1, maxKeys: 10);

        var first = reads.ReadAsync("a");
        var second = reads.ReadAsync("b");
        store.Fail = new InvalidOperationException("the database went away");
        store.Open();
        Assert.Equal("the database went away", (await Assert.ThrowsAsync<InvalidOperationException>(() => first)).Message);

        await WaitForReadsAsync(store, 2);
        store.Fail = null;
        store.Open();
        Assert.Equal("row of b", await second);

        var third = reads.ReadAsync("c");
        await WaitForReadsAsync(store, 3);
        store.Open();
        Assert.Equal("row of c", await third);
    }

    [Fact]
    public async Task ACallerThatGivesUp_EndsItsOwnWait_NotTheRead()
    {
        var store = new Store();
        var reads = new CoalescedReads<string, string>(store.ReadAsync, maxReading: 1, maxKeys: 10);
        using var giveUp = new CancellationTokenSource();

        var running = reads.ReadAsync("a");
        var patient = reads.ReadAsync("b");
        var impatient = reads.ReadAsync("b", giveUp.Token);
        await giveUp.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => impatient);

        store.Open();
        await WaitForReadsAsync(store, 2);
        store.Open();
        Assert.Equal("row of a", await running);
        Assert.Equal("row of b", await patient);
    }

    [Fact]
    public async Task ManyCallersAtOnce_AllGetTheirRows()
    {
        var reads = new CoalescedReads<string, string>(async (keys, _) =>
        {
            await Task.Yield();
            var rows = new Dictionary<string, string>();
            foreach (var key in keys)
            {
                rows[key] = key.ToUpperInvariant();
            }

            return rows;
        }, maxReading: 3, maxKeys: 16);

        var asked = Enumerable.Range(0, 2000).Select(i => $"key-{i % 700}").ToArray();
        var answers = await Task.WhenAll(asked.Select(key => Task.Run(() => reads.ReadAsync(key))));

        Assert.Equal(asked.Select(key => (string?)key.ToUpperInvariant()), answers);
        Assert.InRange(reads.Reads, 1, 2000);
    }

    private static async Task WaitForReadsAsync(Store store, int count)
    {
        // The next read starts on the thread that ended the last one; wait for it to reach the store.
        var deadline = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            Assert.True(deadline.Elapsed < TimeSpan.FromSeconds(30), $"read {count} never started");
            lock (store)
            {
                if (store.Reads.Count >= count && store.Gates.Count > 0)
                {
                    return;
                }
            }

            await Task.Yield();
        }
    }
}
