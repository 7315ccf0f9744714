namespace Taihu.Server.FunctionalTests.Support;

/// <summary>One server process shared by the tests of a class (tests that need their own use <see cref="ServerProcess"/> directly).</summary>
public sealed class ServerFixture : IAsyncLifetime
{
    private ServerProcess? _server;

    public ServerProcess Server => _server ?? throw new InvalidOperationException("The server has not started.");

    public async Task InitializeAsync() => _server = await ServerProcess.StartAsync();

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}
