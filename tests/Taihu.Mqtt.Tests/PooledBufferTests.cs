using System.Buffers;
using System.Runtime.InteropServices;
using Taihu.Mqtt.Buffers;

namespace Taihu.Mqtt.Tests;

/// <summary>
/// <see cref="PooledBuffer"/> wrappers live in one process-wide pool that every decoded PUBLISH draws from. A
/// test that releases a buffer twice must not race a parallel test that rents the wrapper in between, so these
/// tests run alone.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class PooledBufferCollection
{
    public const string Name = "Pooled buffers, alone";
}

[Collection(PooledBufferCollection.Name)]
public class PooledBufferTests
{
    [Fact]
    public void Rent_gives_the_requested_length_and_one_holder()
    {
        var buffer = PooledBuffer.Rent(100);
        Assert.Equal(100, buffer.Length);
        Assert.Equal(100, buffer.Memory.Length);
        Assert.Equal(100, buffer.Span.Length);
        Assert.Equal(1, buffer.RefCount);
        buffer.Release();
        Assert.Equal(0, buffer.RefCount);
    }

    [Fact]
    public void Rent_of_zero_bytes_needs_no_array()
    {
        var buffer = PooledBuffer.Rent(0);
        Assert.Equal(0, buffer.Length);
        Assert.True(buffer.Memory.IsEmpty);
        buffer.Release();
    }

    [Fact]
    public void Rent_of_a_negative_length_throws()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => PooledBuffer.Rent(-1));
    }

    [Fact]
    public void CopyOf_copies_the_source()
    {
        var source = new byte[] { 1, 2, 3, 4 };
        var buffer = PooledBuffer.CopyOf(source);
        source[0] = 99;
        Assert.Equal(new byte[] { 1, 2, 3, 4 }, buffer.Memory.ToArray());
        buffer.Release();
    }

    [Fact]
    public void Every_holder_must_release_before_the_array_goes_back()
    {
        var buffer = PooledBuffer.CopyOf(new byte[] { 7, 8, 9 });
        buffer.Retain();
        buffer.Retain();
        Assert.Equal(3, buffer.RefCount);

        buffer.Release();
        buffer.Release();
        Assert.Equal(1, buffer.RefCount);
        Assert.Equal(new byte[] { 7, 8, 9 }, buffer.Memory.ToArray());

        buffer.Release();
        Assert.Equal(0, buffer.RefCount);
        Assert.Equal(0, buffer.Length);
        Assert.True(buffer.Memory.IsEmpty);
    }

    [Fact]
    public void The_last_release_returns_the_array_to_the_pool()
    {
        // PayloadArrayPool hands out the most recently returned array of a size class first (a stack), so the
        // array comes straight back on the next Rent once the last holder let go, and not before.
        var buffer = PooledBuffer.Rent(1000);
        Assert.True(MemoryMarshal.TryGetArray<byte>(buffer.Memory, out var segment));
        var array = segment.Array!;
        buffer.Retain();

        buffer.Release();
        var whileHeld = PayloadArrayPool.Rent(1000);
        Assert.NotSame(array, whileHeld);

        buffer.Release();
        var next = PayloadArrayPool.Rent(1000);
        Assert.Same(array, next);
        PayloadArrayPool.Return(next);
        PayloadArrayPool.Return(whileHeld);
    }

    [Theory]
    [InlineData(1, 16)]
    [InlineData(16, 16)]
    [InlineData(17, 32)]
    [InlineData(100, 128)]
    [InlineData(1 << 20, 1 << 20)]
    [InlineData((1 << 20) + 1, (1 << 20) + 1)]
    public void Payload_arrays_come_in_power_of_two_size_classes(int requested, int expected)
    {
        var array = PayloadArrayPool.Rent(requested);
        Assert.Equal(expected, array.Length);
        PayloadArrayPool.Return(array);
    }

    [Fact]
    public void Bounded_pool_keeps_at_most_its_capacity()
    {
        var pool = new BoundedPool<object>(2);
        pool.Return(new object());
        pool.Return(new object());
        pool.Return(new object());
        Assert.Equal(2, pool.Count);
        Assert.True(pool.TryTake(out _));
        Assert.True(pool.TryTake(out _));
        Assert.False(pool.TryTake(out var none));
        Assert.Null(none);
    }

    [Fact]
    public void Double_release_throws()
    {
        var buffer = PooledBuffer.Rent(16);
        buffer.Release();
        var ex = Assert.Throws<InvalidOperationException>(buffer.Release);
        Assert.Contains("released more often", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Retain_after_the_last_release_throws_and_changes_nothing()
    {
        var buffer = PooledBuffer.Rent(16);
        buffer.Release();
        Assert.Throws<InvalidOperationException>(buffer.Retain);

        // The failed Retain must not leave a count behind: a Release in a caller's finally block would otherwise
        // put the wrapper into the pool a second time.
        Assert.Equal(0, buffer.RefCount);
        Assert.Throws<InvalidOperationException>(buffer.Release);
    }

    [Fact]
    public void Steady_rent_and_release_allocates_nothing()
    {
        for (var i = 0; i < 100; i++)
        {
            PooledBuffer.Rent(512).Release();
        }

        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 10_000; i++)
        {
            var buffer = PooledBuffer.Rent(512);
            buffer.Retain();
            buffer.Release();
            buffer.Release();
        }

        // A wrapper is about 40 bytes: 10,000 fresh ones would be hundreds of kilobytes.
        Assert.InRange(GC.GetAllocatedBytesForCurrentThread() - before, 0, 4096);
    }
}
