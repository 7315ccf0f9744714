using Taihu.Server.Protocols.Coap;

namespace Taihu.Server.Tests;

/// <summary>The start-up validation of <see cref="CoapOptions"/>: the defaults pass, each broken rule names its setting, the edges pass.</summary>
public sealed class CoapOptionsValidationTests
{
    [Fact]
    public void Defaults_AreValid() => Assert.Empty(new CoapOptions().Validate());

    public static TheoryData<string, Action<CoapOptions>> Broken => new()
    {
        { "Coap:ExchangeLifetime", o => o.ExchangeLifetime = TimeSpan.Zero },
        { "Coap:AckTimeout", o => o.AckTimeout = TimeSpan.FromSeconds(-1) },
        { "Coap:ObservationIdleTimeout", o => o.ObservationIdleTimeout = TimeSpan.Zero },
        { "Coap:SeparateResponseAfter", o => o.SeparateResponseAfter = TimeSpan.Zero },
        { "Coap:AuthenticationLifetime", o => o.AuthenticationLifetime = TimeSpan.FromSeconds(-1) },
        { "Coap:MaxEndpoints", o => o.MaxEndpoints = 0 },
        { "Coap:MaxExchangesPerEndpoint", o => o.MaxExchangesPerEndpoint = 0 },
        { "Coap:MaxObservationsPerEndpoint", o => o.MaxObservationsPerEndpoint = 0 },
        { "Coap:MaxRetransmit", o => o.MaxRetransmit = 11 },
        { "Coap:MaxRetransmit", o => o.MaxRetransmit = -1 },
        { "Coap:BlockSize", o => o.BlockSize = 100 },
        { "Coap:BlockSize", o => o.BlockSize = 2048 },
        { "Coap:BlockSize", o => o.BlockSize = 8 },
    };

    [Theory]
    [MemberData(nameof(Broken))]
    public void BrokenRule_GivesOneMessageNamingTheSetting(string setting, Action<CoapOptions> breakIt)
    {
        var options = new CoapOptions();
        breakIt(options);
        Assert.Contains(setting, Assert.Single(options.Validate()), StringComparison.Ordinal);
    }

    [Fact]
    public void Edges_AreValid()
    {
        Assert.Empty(new CoapOptions { BlockSize = 16, MaxRetransmit = 0, AuthenticationLifetime = TimeSpan.Zero }.Validate());
        Assert.Empty(new CoapOptions { BlockSize = 1024, MaxRetransmit = 10, MaxEndpoints = 1 }.Validate());
    }
}
