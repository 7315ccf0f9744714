using System.Buffers;
using Taihu.Protocols.Coap;

namespace Taihu.Server.Protocols.Coap;

/// <summary>A request as the device API sees it: its endpoint, header, datagram and options.</summary>
internal readonly record struct CoapRequest(CoapEndpoint Endpoint, CoapHeader Header, ReadOnlyMemory<byte> Datagram, CoapOptionRef[] Options)
{
    public ReadOnlySpan<CoapOptionRef> OptionList => Options.AsSpan(0, Header.OptionCount);

    public ReadOnlySpan<byte> Value(CoapOptionRef option) => Datagram.Span.Slice(option.Offset, option.Length);

    public ReadOnlyMemory<byte> Payload => Datagram.Slice(Header.PayloadOffset, Header.PayloadLength);
}

/// <summary>What to answer: a code, a payload (JSON, or a diagnostic text for errors) and the options that go with it.</summary>
internal sealed class CoapResponse(byte code, ReadOnlyMemory<byte> payload = default)
{
    public byte Code { get; } = code;

    public ReadOnlyMemory<byte> Payload { get; set; } = payload;

    public bool Json { get; init; }

    public uint? Observe { get; set; }

    public uint? MaxAge { get; init; }

    public CoapBlock? Block1 { get; set; }

    public CoapBlock? Block2 { get; set; }

    public uint? Size1 { get; init; }

    public uint? Size2 { get; set; }

    /// <summary>Runs once the response is sent (an observation of <c>.../rpc</c> opens its session then).</summary>
    public Action? AfterSend { get; set; }

    /// <summary>An error with a diagnostic payload (RFC 7252 section 5.5.2: UTF-8 text, no Content-Format).</summary>
    public static CoapResponse Error(byte code, string message) => new(code, System.Text.Encoding.UTF8.GetBytes(message));
}

/// <summary>Writes a <see cref="CoapResponse"/> as a datagram.</summary>
internal static class CoapResponseEncoder
{
    /// <summary>Encodes a response: token, options in number order, payload.</summary>
    public static byte[] Encode(CoapType type, ushort messageId, ReadOnlySpan<byte> token, CoapResponse response)
    {
        var payload = response.Payload.Span;
        var buffer = ArrayPool<byte>.Shared.Rent(96 + payload.Length);
        try
        {
            var writer = new CoapWriter(buffer, type, response.Code, messageId, token);
            if (response.Observe is { } observe)
            {
                writer.UIntOption(CoapOption.Observe, observe);
            }

            if (!payload.IsEmpty && response.Json)
            {
                writer.UIntOption(CoapOption.ContentFormat, CoapOption.FormatJson);
            }

            if (response.MaxAge is { } maxAge)
            {
                writer.UIntOption(CoapOption.MaxAge, maxAge);
            }

            if (response.Block2 is { } block2)
            {
                writer.UIntOption(CoapOption.Block2, block2.Encode());
            }

            if (response.Block1 is { } block1)
            {
                writer.UIntOption(CoapOption.Block1, block1.Encode());
            }

            if (response.Size2 is { } size2)
            {
                writer.UIntOption(CoapOption.Size2, size2);
            }

            if (response.Size1 is { } size1)
            {
                writer.UIntOption(CoapOption.Size1, size1);
            }

            writer.Payload(payload);
            return writer.Written.ToArray();
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
