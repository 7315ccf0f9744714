using Taihu.Server;

namespace Taihu.Server.Tests;

/// <summary>
/// The server asks the runtime for inline socket completions unless the operator said otherwise. The switch is
/// process-wide, so these tests share one collection and put the variable back.
/// </summary>
[Collection(nameof(SocketCompletionsTests))]
public class SocketCompletionsTests
{
    [Fact]
    public void Sets_the_switch_when_nobody_did()
    {
        var before = Environment.GetEnvironmentVariable(SocketCompletions.Variable);
        try
        {
            Environment.SetEnvironmentVariable(SocketCompletions.Variable, null);
            SocketCompletions.RunInline();
            Assert.Equal("1", Environment.GetEnvironmentVariable(SocketCompletions.Variable));
        }
        finally
        {
            Environment.SetEnvironmentVariable(SocketCompletions.Variable, before);
        }
    }

    [Fact]
    public void Keeps_the_operators_choice()
    {
        var before = Environment.GetEnvironmentVariable(SocketCompletions.Variable);
        try
        {
            Environment.SetEnvironmentVariable(SocketCompletions.Variable, "0");
            SocketCompletions.RunInline();
            Assert.Equal("0", Environment.GetEnvironmentVariable(SocketCompletions.Variable));
        }
        finally
        {
            Environment.SetEnvironmentVariable(SocketCompletions.Variable, before);
        }
    }
}
