using Microsoft.Extensions.Configuration;
using Taihu.Server;

namespace Taihu.Server.Tests;

/// <summary>
/// The server asks the runtime for inline socket completions unless the operator said otherwise or the store is
/// PostgreSQL. The switch is process-wide, so these tests share one collection and put the variable back.
/// </summary>
[Collection(nameof(SocketCompletionsTests))]
public class SocketCompletionsTests
{
    [Theory]
    [InlineData(null)]
    [InlineData("Sqlite")]
    public void Sets_the_switch_when_nobody_did_on_the_embedded_store(string? provider)
    {
        WithVariable(null, () =>
        {
            Assert.True(SocketCompletions.Choose(Settings(provider)));
            Assert.Equal("1", Environment.GetEnvironmentVariable(SocketCompletions.Variable));
        });
    }

    [Theory]
    [InlineData("PostgreSql")]
    [InlineData("postgresql")]
    public void Keeps_the_runtimes_default_on_PostgreSql(string provider)
    {
        // Npgsql waits synchronously for a cancel request's own connection; on an epoll thread that wait never ends.
        WithVariable(null, () =>
        {
            Assert.False(SocketCompletions.Choose(Settings(provider)));
            Assert.Null(Environment.GetEnvironmentVariable(SocketCompletions.Variable));
        });
    }

    [Theory]
    [InlineData("0", null, false)]
    [InlineData("1", "PostgreSql", true)]
    public void Keeps_the_operators_choice(string chosen, string? provider, bool inline)
    {
        WithVariable(chosen, () =>
        {
            Assert.Equal(inline, SocketCompletions.Choose(Settings(provider)));
            Assert.Equal(chosen, Environment.GetEnvironmentVariable(SocketCompletions.Variable));
        });
    }

    private static IConfiguration Settings(string? provider) =>
        new ConfigurationBuilder().AddInMemoryCollection(provider is null ? [] : [new("Storage:Provider", provider)]).Build();

    private static void WithVariable(string? value, Action test)
    {
        var before = Environment.GetEnvironmentVariable(SocketCompletions.Variable);
        try
        {
            Environment.SetEnvironmentVariable(SocketCompletions.Variable, value);
            test();
        }
        finally
        {
            Environment.SetEnvironmentVariable(SocketCompletions.Variable, before);
        }
    }
}
