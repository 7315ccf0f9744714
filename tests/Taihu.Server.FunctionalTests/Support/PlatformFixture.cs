namespace Taihu.Server.FunctionalTests.Support;

/// <summary>One server shared by a test class, with a tenant and its administrator ready; tests add their own devices.</summary>
public sealed class PlatformFixture : IAsyncLifetime
{
    private ServerProcess? _server;

    public ServerProcess Server => _server ?? throw new InvalidOperationException("The server has not started.");

    public PlatformApi SysAdmin { get; private set; } = null!;

    public PlatformApi Admin { get; private set; } = null!;

    public Guid TenantId { get; private set; }

    public async Task InitializeAsync()
    {
        _server = await ServerProcess.StartAsync();
        SysAdmin = await PlatformApi.SysAdminAsync(_server);
        (TenantId, Admin) = await SysAdmin.CreateTenantWithAdminAsync("Tenant " + Guid.NewGuid().ToString("N")[..8]);
    }

    public async Task DisposeAsync()
    {
        SysAdmin?.Dispose();
        Admin?.Dispose();
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}
