using Microsoft.Extensions.Options;
using Taihu.Broker.Hosting;

namespace Taihu.Server.Protocols.Coap;

/// <summary>
/// Settings of the CoAP listener (section <c>Coap</c>); the port is <c>Listeners:CoapPort</c>. Every piece of state
/// kept for a remote endpoint (remembered responses, block transfers, observations) is bounded here, since UDP lets
/// anyone create endpoints by sending from new ports.
/// </summary>
public sealed class CoapOptions
{
    public const string SectionName = "Coap";

    /// <summary>
    /// How long a response is remembered to answer a duplicate request (same endpoint and message id) without
    /// handling it twice: RFC 7252's EXCHANGE_LIFETIME, 247 s with its default transmission parameters.
    /// Unfinished block-wise transfers are dropped after the same time.
    /// </summary>
    public TimeSpan ExchangeLifetime { get; set; } = TimeSpan.FromSeconds(247);

    /// <summary>Remote endpoints (address and port) with state at once; a new one beyond this is answered 5.03.</summary>
    public int MaxEndpoints { get; set; } = 20_000;

    /// <summary>
    /// Responses remembered per endpoint for duplicate detection; the oldest is forgotten first. A device waits for
    /// each confirmable answer, so a few are enough; 64 allows for non-confirmable bursts.
    /// </summary>
    public int MaxExchangesPerEndpoint { get; set; } = 64;

    /// <summary>Block-wise uploads (Block1) one endpoint may have in progress at once.</summary>
    public int MaxBlockTransfersPerEndpoint { get; set; } = 4;

    /// <summary>Observations (of <c>.../attributes</c> and <c>.../rpc</c>) one endpoint may hold.</summary>
    public int MaxObservationsPerEndpoint { get; set; } = 8;

    /// <summary>
    /// Block size of large responses (Block2) when the client does not ask for one: 16 to 1024, a power of two.
    /// 512 keeps a block with its header under the 1,152 bytes RFC 7252 assumes fit an IP packet.
    /// </summary>
    public int BlockSize { get; set; } = 512;

    /// <summary>RFC 7252's ACK_TIMEOUT: the first wait for the ACK of a confirmable notification; doubled on each retransmission.</summary>
    public TimeSpan AckTimeout { get; set; } = TimeSpan.FromSeconds(2);

    /// <summary>RFC 7252's MAX_RETRANSMIT. A notification still unacknowledged after these ends the observation (the device is gone).</summary>
    public int MaxRetransmit { get; set; } = 4;

    /// <summary>
    /// An observation ends when its endpoint sends nothing for this long (a device re-registers or sends anything
    /// more often to stay reachable). A device that observes <c>.../rpc</c> is online meanwhile.
    /// </summary>
    public TimeSpan ObservationIdleTimeout { get; set; } = TimeSpan.FromHours(1);

    /// <summary>
    /// A confirmable request still being handled after this long is acknowledged at once with an empty ACK and
    /// answered later (a separate response), so that the client stops retransmitting it.
    /// </summary>
    public TimeSpan SeparateResponseAfter { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// How long an endpoint that authenticated with an access token is taken to be that device without looking the
    /// token up again (as an MQTT connection is, for its whole life): a device posting every second costs one lookup
    /// per this time, not one per request, and many devices behind one address (NAT) do not queue on the failed-login
    /// allowance of that address. A token changed or a device deleted is noticed at once (the
    /// listener forgets what it remembered of the device).
    /// </summary>
    public TimeSpan AuthenticationLifetime { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>Requests handled at once; datagrams beyond are dropped (clients retransmit confirmable ones).</summary>
    public int MaxConcurrentRequests { get; set; } = 4096;

    public IEnumerable<string> Validate()
    {
        if (AuthenticationLifetime < TimeSpan.Zero)
        {
            yield return "Coap:AuthenticationLifetime must not be negative (0 looks the token up on every request).";
        }

        if (ExchangeLifetime <= TimeSpan.Zero || AckTimeout <= TimeSpan.Zero || ObservationIdleTimeout <= TimeSpan.Zero || SeparateResponseAfter <= TimeSpan.Zero)
        {
            yield return "Coap:ExchangeLifetime, Coap:AckTimeout, Coap:ObservationIdleTimeout and Coap:SeparateResponseAfter must be positive.";
        }

        if (MaxEndpoints < 1 || MaxExchangesPerEndpoint < 1 || MaxBlockTransfersPerEndpoint < 1 || MaxObservationsPerEndpoint < 1 || MaxConcurrentRequests < 1)
        {
            yield return "Coap:MaxEndpoints, Coap:MaxExchangesPerEndpoint, Coap:MaxBlockTransfersPerEndpoint, Coap:MaxObservationsPerEndpoint and Coap:MaxConcurrentRequests must be at least 1.";
        }

        if (MaxRetransmit is < 0 or > 10)
        {
            yield return "Coap:MaxRetransmit must be 0 to 10.";
        }

        if (BlockSize is < 16 or > 1024 || (BlockSize & (BlockSize - 1)) != 0)
        {
            yield return "Coap:BlockSize must be a power of two from 16 to 1024.";
        }
    }
}

internal sealed class CoapOptionsValidator : IValidateOptions<CoapOptions>
{
    public ValidateOptionsResult Validate(string? name, CoapOptions options) => OptionsProblems.Result(options.Validate());
}
