using System.Buffers;
using System.Collections.Concurrent;

namespace Taihu.Mqtt.Buffers;

/// <summary>
/// A reference-counted byte buffer rented from <see cref="PayloadArrayPool"/>. A decoded PUBLISH payload lives
/// in one of these and is shared by every delivery of the message: each holder calls <see cref="Retain"/> and
/// <see cref="Release"/>; the array goes back to the pool when the count reaches zero. The wrapper objects are
/// themselves pooled so that steady traffic allocates nothing.
/// </summary>
public sealed class PooledBuffer
{
    private static readonly BoundedPool<PooledBuffer> s_wrappers = new(16_384);

    private byte[] _array = [];
    private int _length;
    private int _refCount;

    private PooledBuffer()
    {
    }

    /// <summary>Rents a buffer of exactly <paramref name="length"/> usable bytes with a reference count of one.</summary>
    public static PooledBuffer Rent(int length)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(length);
        var buffer = s_wrappers.TryTake(out var pooled) ? pooled! : new PooledBuffer();
        buffer._array = length == 0 ? [] : PayloadArrayPool.Rent(length);
        buffer._length = length;
        buffer._refCount = 1;
        return buffer;
    }

    /// <summary>Rents a buffer holding a copy of <paramref name="source"/>.</summary>
    public static PooledBuffer CopyOf(ReadOnlySpan<byte> source)
    {
        var buffer = Rent(source.Length);
        source.CopyTo(buffer._array);
        return buffer;
    }

    public int Length => _length;

    /// <summary>The live reference count (for tests and diagnostics).</summary>
    public int RefCount => Volatile.Read(ref _refCount);

    public Memory<byte> Memory => new(_array, 0, _length);

    public Span<byte> Span => new(_array, 0, _length);

    /// <summary>Adds a holder.</summary>
    public void Retain()
    {
        if (Interlocked.Increment(ref _refCount) <= 1)
        {
            // Undo the increment: left at 1, a later Release would return the wrapper to the pool a second time.
            Interlocked.Decrement(ref _refCount);
            throw new InvalidOperationException("The buffer was already returned to the pool.");
        }
    }

    /// <summary>Removes a holder; the last one returns the array to the pool.</summary>
    public void Release()
    {
        var count = Interlocked.Decrement(ref _refCount);
        if (count > 0)
        {
            return;
        }

        if (count < 0)
        {
            throw new InvalidOperationException("The buffer was released more often than it was retained.");
        }

        var array = _array;
        _array = [];
        _length = 0;
        if (array.Length > 0)
        {
            PayloadArrayPool.Return(array);
        }

        s_wrappers.Return(this);
    }
}
