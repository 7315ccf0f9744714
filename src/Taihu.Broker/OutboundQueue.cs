namespace Taihu.Broker;

/// <summary>What <see cref="OutboundQueue.Enqueue"/> did with an item.</summary>
internal enum EnqueueResult
{
    /// <summary>Queued; the consumer is already scheduled or running.</summary>
    Queued,
    /// <summary>Queued, and the consumer was idle: the caller must schedule it.</summary>
    QueuedWakeConsumer,
    /// <summary>Refused: the queue is completed (the connection is closing).</summary>
    Rejected,
}

/// <summary>What the consumer should do after finding the queue empty.</summary>
internal enum DrainState
{
    /// <summary>Items arrived meanwhile: keep draining.</summary>
    Continue,
    /// <summary>Empty: the consumer stops; the next enqueue schedules it again.</summary>
    Idle,
    /// <summary>Empty and completed: nothing will ever come again.</summary>
    Finished,
}

/// <summary>
/// The packets waiting for one connection's socket: many producers (deliveries from other connections'
/// threads, acknowledgements from the receive loop), one consumer (the connection's sender). A ring buffer
/// under a lock, which also tracks whether the consumer is scheduled, so that a burst of deliveries wakes the
/// sender once and an idle connection holds no sender task at all. The array is allocated on first use and
/// shrinks back when a burst has drained, so an idle connection costs a few dozen bytes here.
/// </summary>
internal sealed class OutboundQueue
{
    private const int InitialCapacity = 4;
    private const int ShrinkAbove = 256;

    private OutboundItem[] _items = [];
    private int _head;
    private int _count;
    private bool _consumerActive;
    private bool _completed;
    private int _highWater;
    private int _resumeAt;
    private TaskCompletionSource? _room;

    /// <summary>The most items ever queued at once (for tests and diagnostics).</summary>
    public int HighWater => Volatile.Read(ref _highWater);

    /// <summary>
    /// Null when fewer than <paramref name="limit"/> items are queued; otherwise a task that completes once the
    /// consumer has taken the queue down to half of it (or the queue is completed). The connection's reader waits
    /// on it, so that what a client makes the broker answer (acknowledgements) cannot pile up without end.
    /// </summary>
    public Task? WaitForRoom(int limit)
    {
        lock (this)
        {
            if (_count < limit || _completed)
            {
                return null;
            }

            _resumeAt = limit / 2;
            return (_room ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }
    }

    /// <summary>Items queued now (a snapshot).</summary>
    public int Count => Volatile.Read(ref _count);

    public bool IsCompleted => Volatile.Read(ref _completed);

    public EnqueueResult Enqueue(in OutboundItem item)
    {
        lock (this)
        {
            if (_completed)
            {
                return EnqueueResult.Rejected;
            }

            if (_count == _items.Length)
            {
                Grow();
            }

            _items[(_head + _count) % _items.Length] = item;
            _count++;
            if (_count > _highWater)
            {
                _highWater = _count;
            }
            if (_consumerActive)
            {
                return EnqueueResult.Queued;
            }

            _consumerActive = true;
            return EnqueueResult.QueuedWakeConsumer;
        }
    }

    public bool TryDequeue(out OutboundItem item)
    {
        lock (this)
        {
            if (_count == 0)
            {
                item = default;
                return false;
            }

            item = _items[_head];
            _items[_head] = default;
            _head = (_head + 1) % _items.Length;
            _count--;
            if (_room is { } room && _count <= _resumeAt)
            {
                _room = null;
                room.TrySetResult();
            }

            return true;
        }
    }

    /// <summary>The consumer found nothing more: it goes idle unless items arrived meanwhile.</summary>
    public DrainState TryStop()
    {
        lock (this)
        {
            if (_count > 0)
            {
                return DrainState.Continue;
            }

            if (_items.Length > ShrinkAbove)
            {
                _items = [];
                _head = 0;
            }

            if (_completed)
            {
                return DrainState.Finished;
            }

            _consumerActive = false;
            return DrainState.Idle;
        }
    }

    /// <summary>No more items will be accepted. True when the consumer is idle and must be scheduled to finish.</summary>
    public bool Complete()
    {
        lock (this)
        {
            _completed = true;
            _room?.TrySetResult();
            _room = null;
            if (_consumerActive)
            {
                return false;
            }

            _consumerActive = true;
            return true;
        }
    }

    private void Grow()
    {
        var next = new OutboundItem[Math.Max(InitialCapacity, _items.Length * 2)];
        for (var i = 0; i < _count; i++)
        {
            next[i] = _items[(_head + i) % _items.Length];
        }

        _items = next;
        _head = 0;
    }
}

/// <summary>What the channel needs from its transport, without doing I/O itself.</summary>
public interface IChannelTransport
{
    /// <summary>Something was queued for an idle connection: start sending.</summary>
    void ScheduleSend();

    /// <summary>The connection is closing: stop reading from the socket.</summary>
    void StopReceiving();
}
