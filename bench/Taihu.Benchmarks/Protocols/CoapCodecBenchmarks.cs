using BenchmarkDotNet.Attributes;
using Taihu.Protocols.Coap;

namespace Taihu.Benchmarks.Protocols;

/// <summary>
/// The CoAP codec on the listener's per-datagram path: parsing a telemetry POST as Debian's coap-client-notls sends
/// it (header, token, Uri-Port, four Uri-Path options, payload) into the caller's option table and reading its path;
/// and writing the piggybacked 2.01 answer into a span. Both should allocate nothing.
/// </summary>
[MemoryDiagnoser]
public class CoapCodecBenchmarks
{
    // Captured from coap-client-notls (libcoap 4.3.1): -m post -e '{"temperature":21}' coap://127.0.0.1:56830/api/v1/A1_TEST_TOKEN/telemetry
    private static readonly byte[] Post = Convert.FromHexString("41023e150172ddfe436170690276310d0041315f544553545f544f4b454e0974656c656d65747279ff7b2274656d7065726174757265223a32317d");
    private readonly CoapOptionRef[] _options = new CoapOptionRef[32];
    private readonly byte[] _reply = new byte[64];

    [Benchmark(Baseline = true)]
    public int ParseTelemetryPost()
    {
        CoapParser.TryParse(Post, _options, out var header);
        var segments = 0;
        var telemetry = false;
        for (var i = 0; i < header.OptionCount; i++)
        {
            if (_options[i].Number == CoapOption.UriPath)
            {
                segments++;
                telemetry = Post.AsSpan(_options[i].Offset, _options[i].Length).SequenceEqual("telemetry"u8);
            }
        }

        return telemetry ? header.PayloadLength + segments : -1;
    }

    [Benchmark]
    public int WriteCreatedAck()
    {
        var writer = new CoapWriter(_reply, CoapType.Acknowledgement, CoapCode.Created, 0x3e15, Post.AsSpan(4, 1));
        return writer.Length;
    }
}
