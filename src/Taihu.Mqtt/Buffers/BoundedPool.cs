namespace Taihu.Mqtt.Buffers;

/// <summary>
/// A bounded last-in-first-out pool behind a lock. Unlike <c>ConcurrentQueue</c>, whose segments are reallocated
/// as items flow through it, this keeps one fixed array: taking and returning never allocate, which is what a pool
/// on the per-message path needs. Contention is short: a pop or a push under the lock.
/// </summary>
public sealed class BoundedPool<T>
    where T : class
{
    private readonly T?[] _items;
    private int _count;

    public BoundedPool(int capacity)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(capacity, 1);
        _items = new T?[capacity];
    }

    /// <summary>Items held now.</summary>
    public int Count => Volatile.Read(ref _count);

    public bool TryTake(out T? item)
    {
        lock (_items)
        {
            if (_count == 0)
            {
                item = null;
                return false;
            }

            item = _items[--_count];
            _items[_count] = null;
            return true;
        }
    }

    /// <summary>Keeps <paramref name="item"/> unless the pool is full (then it is left to the GC).</summary>
    public void Return(T item)
    {
        lock (_items)
        {
            if (_count < _items.Length)
            {
                _items[_count++] = item;
            }
        }
    }
}

/// <summary>
/// Byte arrays in power-of-two sizes from 16 bytes to 1 MiB, for payloads. The shared <c>ArrayPool</c> keeps its
/// arrays per thread and per core, and a payload rented by a publisher's thread and returned by a subscriber's
/// thread drains one cache into another until the pool allocates anew; these buckets are shared by all threads.
/// Each bucket holds at most 4 MiB or 4,096 arrays, so the pool's own memory stays bounded.
/// </summary>
public static class PayloadArrayPool
{
    private const int MinShift = 4;   // 16 bytes
    private const int MaxShift = 20;  // 1 MiB
    private static readonly BoundedPool<byte[]>[] s_buckets = CreateBuckets();

    private static BoundedPool<byte[]>[] CreateBuckets()
    {
        var buckets = new BoundedPool<byte[]>[MaxShift - MinShift + 1];
        for (var i = 0; i < buckets.Length; i++)
        {
            var size = 1 << (i + MinShift);
            buckets[i] = new BoundedPool<byte[]>(Math.Clamp((4 << 20) / size, 4, 4096));
        }

        return buckets;
    }

    /// <summary>An array of at least <paramref name="length"/> bytes (exactly that, above 1 MiB).</summary>
    public static byte[] Rent(int length)
    {
        if (length > 1 << MaxShift)
        {
            return new byte[length];
        }

        var shift = Math.Max(MinShift, 32 - System.Numerics.BitOperations.LeadingZeroCount((uint)Math.Max(1, length - 1)));
        var bucket = s_buckets[shift - MinShift];
        return bucket.TryTake(out var array) ? array! : new byte[1 << shift];
    }

    public static void Return(byte[] array)
    {
        ArgumentNullException.ThrowIfNull(array);
        var length = array.Length;
        if (length < 1 << MinShift || length > 1 << MaxShift || !System.Numerics.BitOperations.IsPow2(length))
        {
            return;
        }

        s_buckets[System.Numerics.BitOperations.Log2((uint)length) - MinShift].Return(array);
    }
}
