using System.Text;
using BenchmarkDotNet.Attributes;
using Taihu.Protocols.Hj212;

namespace Taihu.Benchmarks.Protocols;

/// <summary>
/// Decoding an HJ 212 minute-data upload (CN 2051, eight pollutants with Min, Avg, Max and Flag: 32 values) as the
/// listener does: <see cref="Frame"/> finds the frame and checks its CRC in place (nothing may be allocated);
/// <see cref="Message"/> adds the data segment's fields (the listener keeps QN, ST, CN, PW, MN and the CP text);
/// <see cref="Points"/> adds the CP's points into a reused list (the keys and the flags' text are what is kept).
/// The <c>WithNames</c> pair decodes as the listener does, with the connection's name cache: what a station sends in
/// every frame (MN, PW, ST, CN, keys, flags) is not allocated again.
/// </summary>
[MemoryDiagnoser]
public class Hj212DecodeBenchmarks
{
    private readonly List<Hj212Point> _points = new(64);
    private readonly Hj212NameCache _names = new();
    private readonly System.Buffers.ArrayBufferWriter<byte> _output = new(256);
    private byte[] _frame = [];

    [GlobalSetup]
    public void Setup()
    {
        var cp = new StringBuilder("DataTime=20261204083000");
        foreach (var code in new[] { "a34004", "a34002", "a21026", "a21004", "a21005", "a05024", "a01001", "a01002" })
        {
            cp.Append(';').Append(code).Append("-Min=12.3,").Append(code).Append("-Avg=15.6,").Append(code).Append("-Max=19.1,").Append(code).Append("-Flag=N");
        }

        _frame = Hj212Framing.Encode($"QN=20261204083000123;ST=22;CN=2051;PW=123456;MN=010000A8900016F000169DC0;Flag=5;CP=&&{cp}&&");
    }

    [Benchmark(Baseline = true)]
    public int Frame()
    {
        Hj212Framing.TryRead(_frame, Hj212Framing.MaxDataLength, Hj212CrcKind.Standard, out var segment, out _, out _);
        return segment.End.Value;
    }

    [Benchmark]
    public int Message() => DecodeMessage()!.Cp.Length;

    [Benchmark]
    public int Points()
    {
        var message = DecodeMessage()!;
        _points.Clear();
        Hj212Data.TryRead(message.Cp, Hj212Data.ChinaStandardTime, _points, out _, out _);
        return _points.Count;
    }

    /// <summary>As the listener decodes: with the connection's <see cref="Hj212NameCache"/> (MN, PW, keys and flags kept from the frames before).</summary>
    [Benchmark]
    public int MessageWithNames() => DecodeMessage(_names)!.Cp.Length;

    [Benchmark]
    public int PointsWithNames()
    {
        var message = DecodeMessage(_names)!;
        _points.Clear();
        Hj212Data.TryRead(message.Cp, Hj212Data.ChinaStandardTime, _points, _names, out _, out _);
        return _points.Count;
    }

    /// <summary>
    /// As the listener decodes a data upload: the data segment read in place (<see cref="Hj212Segment"/>), the
    /// station's names taken from the name cache (as the listener keeps them), and the points read from the frame's
    /// characters without copying the CP text. Nothing but the points may be allocated.
    /// </summary>
    [Benchmark]
    public int PointsInPlace()
    {
        Hj212Framing.TryRead(_frame, Hj212Framing.MaxDataLength, Hj212CrcKind.Standard, out var segment, out _, out _);
        var bytes = _frame.AsSpan(segment);
        Span<char> chars = stackalloc char[bytes.Length];
        Encoding.Latin1.GetChars(bytes, chars);
        if (!Hj212Segment.TryParse(chars, out var read, out _) || !Hj212Data.IsData(_names.Get(read.Cn)))
        {
            return -1;
        }

        _ = (_names.Get(read.Mn), _names.Get(read.Pw), _names.Get(read.St));
        _points.Clear();
        Hj212Data.TryRead(read.Cp, Hj212Data.ChinaStandardTime, _points, _names, out _, out _);
        return _points.Count;
    }

    /// <summary>
    /// <see cref="PointsInPlace"/> and the 9014 answer the listener writes after the commit, framed with its CRC
    /// into a reused buffer from the upload's QN (kept as characters), PW and MN.
    /// </summary>
    [Benchmark]
    public int PointsAndAnswerInPlace()
    {
        Hj212Framing.TryRead(_frame, Hj212Framing.MaxDataLength, Hj212CrcKind.Standard, out var segment, out _, out _);
        var bytes = _frame.AsSpan(segment);
        Span<char> chars = stackalloc char[bytes.Length];
        Encoding.Latin1.GetChars(bytes, chars);
        if (!Hj212Segment.TryParse(chars, out var read, out _) || !Hj212Data.IsData(_names.Get(read.Cn)))
        {
            return -1;
        }

        var (mn, pw) = (_names.Get(read.Mn), _names.Get(read.Pw));
        _points.Clear();
        Hj212Data.TryRead(read.Cp, Hj212Data.ChinaStandardTime, _points, _names, out _, out _);
        Span<char> answer = stackalloc char[Hj212Replies.MaxDataAnswerLength];
        Hj212Replies.TryWriteDataAnswer(answer, read.Qn, read.HasQn, pw, mn, read.Flag, out var length);
        _output.ResetWrittenCount();
        Hj212Framing.Write(_output, answer[..length]);
        return _points.Count + _output.WrittenCount;
    }

    private Hj212Message? DecodeMessage(Hj212NameCache? names = null)
    {
        Hj212Framing.TryRead(_frame, Hj212Framing.MaxDataLength, Hj212CrcKind.Standard, out var segment, out _, out _);
        var bytes = _frame.AsSpan(segment);
        Span<char> chars = stackalloc char[bytes.Length];
        Encoding.Latin1.GetChars(bytes, chars);
        return Hj212Message.TryParse(chars, names, out var message, out _) ? message : null;
    }
}
