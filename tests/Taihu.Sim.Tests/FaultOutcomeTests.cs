using Taihu.Sim.Running;
using Taihu.Sim.Scenarios;

namespace Taihu.Sim.Tests;

/// <summary>Whether an injected fault counts as handled, from what the server answered.</summary>
public sealed class FaultOutcomeTests
{
    private static FaultRun Run(FaultKind kind, params string[] outcomes)
    {
        var run = new FaultRun(new FaultDefinition(kind, "fleet", 1, TimeSpan.Zero, null, 1, TimeSpan.Zero, 7), []);
        foreach (var outcome in outcomes)
        {
            run.Record(outcome);
        }

        return run;
    }

    [Theory]
    [InlineData(FaultKind.Malformed, "refused: PUBACK 0x99 PayloadFormatInvalid")]
    [InlineData(FaultKind.Malformed, "connection closed by the server")]
    [InlineData(FaultKind.Malformed, "refused: HTTP 400")]
    [InlineData(FaultKind.Oversized, "refused: HTTP 413")]
    [InlineData(FaultKind.Duplicate, "acknowledged again")]
    [InlineData(FaultKind.Burst, "acknowledged")]
    [InlineData(FaultKind.ClockSkew, "refused: PUBACK 0x99 PayloadFormatInvalid")]
    [InlineData(FaultKind.ClockSkew, "acknowledged")]
    public void ClearAnswers_AreHandled(FaultKind kind, string outcome)
    {
        Assert.True(Run(kind, outcome, outcome).Handled(plainMqtt: false, out var why), why);
    }

    [Theory]
    [InlineData(FaultKind.Malformed, "acknowledged", "acknowledged what it should have refused")]
    [InlineData(FaultKind.Oversized, "acknowledged", "acknowledged what it should have refused")]
    [InlineData(FaultKind.Malformed, "not connected", "could not be injected")]
    [InlineData(FaultKind.Burst, "connection closed by the server", "lost without an answer")]
    [InlineData(FaultKind.Duplicate, "not connected", "lost without an answer")]
    public void AcceptedGarbage_OrLostMessages_AreNotHandled(FaultKind kind, string outcome, string reason)
    {
        var run = Run(kind, "refused: PUBACK 0x99 PayloadFormatInvalid", outcome);
        Assert.False(run.Handled(plainMqtt: false, out var why));
        Assert.Contains(reason, why, StringComparison.Ordinal);
        Assert.Contains("1 × " + outcome, why, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(FaultKind.Malformed)]
    [InlineData(FaultKind.Oversized)]
    public void PlainMqttServer_MayAcknowledgeWhatItDoesNotRead(FaultKind kind)
    {
        Assert.True(Run(kind, "acknowledged").Handled(plainMqtt: true, out var why), why);
        Assert.False(Run(kind, "acknowledged").Handled(plainMqtt: false, out _));

        // Still a fault that could not be injected is not handled.
        Assert.False(Run(kind, "acknowledged", "not connected").Handled(plainMqtt: true, out why));
        Assert.Contains("could not be injected", why, StringComparison.Ordinal);
    }

    [Fact]
    public void Outcomes_AreCountedMostFrequentFirst()
    {
        var run = Run(FaultKind.Burst, "acknowledged", "refused: PUBACK 0x97 QuotaExceeded", "acknowledged");
        Assert.Equal([("acknowledged", 2), ("refused: PUBACK 0x97 QuotaExceeded", 1)], run.Outcomes());
    }
}
