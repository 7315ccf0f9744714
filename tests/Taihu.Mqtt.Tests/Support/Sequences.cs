using System.Buffers;

namespace Taihu.Mqtt.Tests.Support;

/// <summary>
/// Builds multi-segment <see cref="ReadOnlySequence{T}"/>s, the shape a pipe hands over when a frame arrives in
/// several reads. Every chunk is copied into its own array so that nothing can read across a segment boundary
/// by accident.
/// </summary>
internal static class Sequences
{
    /// <summary>The segments of <paramref name="chunks"/>, linked; empty chunks are kept as empty segments.</summary>
    public static IReadOnlyList<Segment> Link(IReadOnlyList<byte[]> chunks)
    {
        var segments = new List<Segment>(chunks.Count);
        Segment? previous = null;
        foreach (var chunk in chunks)
        {
            var segment = new Segment(chunk.ToArray(), previous is null ? 0 : previous.RunningIndex + previous.Memory.Length);
            previous?.SetNext(segment);
            segments.Add(segment);
            previous = segment;
        }

        return segments;
    }

    /// <summary>The sequence made of the first <paramref name="count"/> segments.</summary>
    public static ReadOnlySequence<byte> Take(IReadOnlyList<Segment> segments, int count)
    {
        if (count == 0)
        {
            return ReadOnlySequence<byte>.Empty;
        }

        var last = segments[count - 1];
        return new ReadOnlySequence<byte>(segments[0], 0, last, last.Memory.Length);
    }

    public static ReadOnlySequence<byte> FromChunks(IReadOnlyList<byte[]> chunks) => Take(Link(chunks), chunks.Count);

    /// <summary>One segment per byte: the most fragmented a frame can arrive.</summary>
    public static ReadOnlySequence<byte> OneBytePerSegment(byte[] data) => FromChunks(data.Select(b => new[] { b }).ToList());

    /// <summary>
    /// Cuts <paramref name="data"/> into random chunks. The shapes vary by iteration: the fixed header split byte by
    /// byte, many small chunks, a few large ones, and the odd empty segment in between.
    /// </summary>
    public static List<byte[]> RandomChunks(Random rng, byte[] data)
    {
        var chunks = new List<byte[]>();
        var position = 0;
        var shape = rng.Next(4);
        while (position < data.Length)
        {
            var left = data.Length - position;
            var size = shape switch
            {
                0 when position < 6 => 1,
                1 => rng.Next(1, Math.Min(left, 17) + 1),
                2 => rng.Next(1, Math.Max(2, left / 3) + 1),
                _ => rng.Next(1, left + 1),
            };
            size = Math.Min(size, left);
            chunks.Add(data.AsSpan(position, size).ToArray());
            position += size;
            if (rng.Next(10) == 0)
            {
                chunks.Add([]);
            }
        }

        return chunks;
    }

    internal sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public void SetNext(Segment next) => Next = next;
    }
}
