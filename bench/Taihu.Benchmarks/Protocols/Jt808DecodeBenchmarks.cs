using BenchmarkDotNet.Attributes;
using Taihu.Protocols.Jt808;

namespace Taihu.Benchmarks.Protocols;

/// <summary>
/// A JT/T 808 location report 0x0200 through the listener's decode path: the framing (escapes undone, check code
/// verified) into the connection's reused message buffer, the header read in place, the location read into a value
/// type. The frames are go-jt808's published ones: a plain report (with an escaped 0x7E in its latitude) and one
/// with every extra item. Nothing here should allocate: the MemoryDiagnoser's column is the claim.
/// </summary>
[MemoryDiagnoser]
public class Jt808DecodeBenchmarks
{
    private readonly byte[] _message = new byte[Jt808Framing.MaxUnescapedLength];
    private byte[] _frame = [];

    [Params("basic", "all extras")]
    public string Report { get; set; } = "basic";

    [GlobalSetup]
    public void Setup() => _frame = Convert.FromHexString(Report == "basic"
        ? "7e0200001c0123456789010000000004000000080007203b7d0202633df70138000300632410012359591c7e"
        : "7e020000800123456789017fff000004000000080006eeb6ad02633df701380003006320070719235901040000000b02020016030200210402002c051e3737370000000000000000000000000000000000000000000000000000001105420000004212064d0000004d4d1307000000580058582504000000632a02000a2b040000001430011e31012806020001927e");

    [Benchmark]
    public double DecodeLocationReport()
    {
        Jt808Framing.TryRead(_frame, _message, out var length, out _, out _);
        var message = _message.AsSpan(0, length);
        Jt808HeaderFields.TryRead(message, out var header);
        Jt808Location.TryRead(message.Slice(header.Length, header.BodyLength), out var location);
        return location.Latitude + (location.Mileage ?? 0);
    }
}
