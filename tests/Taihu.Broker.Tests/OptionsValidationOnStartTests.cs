using Microsoft.Extensions.Options;
using Taihu.Broker.Tests.Support;

namespace Taihu.Broker.Tests;

/// <summary>The broker's options are validated when its host starts, wherever it is hosted, naming each broken setting.</summary>
public sealed class OptionsValidationOnStartTests
{
    [Fact]
    public async Task InvalidBrokerOptions_StopTheHost_NamingEverySetting()
    {
        var e = await Assert.ThrowsAsync<OptionsValidationException>(() => BrokerHost.StartAsync(o =>
        {
            o.MaximumInflightMessages = 0;
            o.MaximumConnections = 0;
        }));

        Assert.Contains(e.Failures, f => f.StartsWith("Broker:MaximumInflightMessages ", StringComparison.Ordinal));
        Assert.Contains(e.Failures, f => f.StartsWith("Broker:MaximumConnections ", StringComparison.Ordinal));
    }
}
