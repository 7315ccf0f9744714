using Microsoft.Extensions.Logging.Abstractions;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Time.Testing;
using Taihu.Platform;
using Taihu.Platform.Storage;
using Taihu.Platform.Tenants;
using Taihu.Server.Api;

namespace Taihu.Server.Tests;

/// <summary>
/// Access tokens checked once are remembered by their text (an API client sends the same one on every call); a
/// remembered token is still refused once it has expired or its user's tokens were revoked. A real SQLite store
/// and a fake clock.
/// </summary>
public sealed class JwtTokensTests : IAsyncLifetime, IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "taihu-jwt-" + Guid.NewGuid().ToString("N"));
    private readonly FakeTimeProvider _time = new(DateTimeOffset.FromUnixTimeSeconds(1_700_000_000));
    private PlatformDatabase _database = null!;
    private SqlTenantStore _store = null!;
    private JwtTokens _tokens = null!;
    private UserSecrets _user = null!;

    public async Task InitializeAsync()
    {
        Directory.CreateDirectory(_directory);
        _database = new PlatformDatabase(new SqliteDialect(SqliteDialect.FileConnectionString(_directory), SqliteDurability.Normal));
        await _database.MigrateAsync();
        _store = new SqlTenantStore(_database);
        var tenant = new Tenant(Guid.NewGuid(), "jwt", _time.GetUtcNow().ToUnixTimeMilliseconds(), null);
        await _store.CreateTenantAsync(tenant);
        var user = new User(Guid.NewGuid(), tenant.Id, "jwt@example.com", Authority.TenantAdmin, null, null, _time.GetUtcNow().ToUnixTimeMilliseconds(), true);
        await _store.CreateUserAsync(user, null, null);
        _user = (await _store.GetUserSecretsAsync(user.Id))!;
        _tokens = Node(clustered: false, _directory);
    }

    private JwtTokens Node(bool clustered, string directory) =>
        new(Options.Create(new ServerOptions { DataDirectory = directory }), Options.Create(new SecurityOptions()), _time, _store,
            NullLogger<JwtTokens>.Instance, Options.Create(new Taihu.Cluster.ClusterNodeOptions { Enabled = clustered }));

    public Task DisposeAsync() => Task.CompletedTask;

    public void Dispose()
    {
        _database.Dispose();
        // Pooled connections keep the file open; close them before deleting it.
        using (var connection = new Microsoft.Data.Sqlite.SqliteConnection(SqliteDialect.FileConnectionString(_directory)))
        {
            Microsoft.Data.Sqlite.SqliteConnection.ClearPool(connection);
        }

        Directory.Delete(_directory, recursive: true);
    }

    [Fact]
    public async Task ATokenNeverChecked_IsNotRemembered_OneChecked_Is()
    {
        var (token, _) = await _tokens.IssueAsync(_user);
        Assert.Null(await _tokens.ValidateCheckedAsync(token));

        var checkedOnce = await _tokens.ValidateAsync(token);
        var remembered = await _tokens.ValidateCheckedAsync(token.AsSpan());
        Assert.Equal(checkedOnce, remembered);
        Assert.Equal(_user.User.Id, remembered!.UserId);

        // Only the exact text: a token with one character changed is not the remembered one.
        Assert.Null(await _tokens.ValidateCheckedAsync(token[..^1] + (token[^1] == 'A' ? 'B' : 'A')));
    }

    [Fact]
    public async Task ARememberedToken_IsRefused_OnceExpired()
    {
        var (token, _) = await _tokens.IssueAsync(_user);
        await _tokens.ValidateAsync(token);

        _time.Advance(new SecurityOptions().TokenLifetime + TimeSpan.FromSeconds(1));
        var expired = await Assert.ThrowsAsync<PlatformException>(async () => await _tokens.ValidateCheckedAsync(token));
        Assert.Equal((401, 11, "Token has expired"), (expired.Status, expired.ErrorCode, expired.Message));
    }

    [Fact]
    public async Task ARememberedToken_IsRefused_OnceItsUsersTokensAreRevoked()
    {
        var (token, _) = await _tokens.IssueAsync(_user);
        await _tokens.ValidateAsync(token);
        Assert.NotNull(await _tokens.ValidateCheckedAsync(token));

        // A logout: the user's token version goes up and what was known of the user is forgotten.
        await _store.BumpTokenVersionAsync(_user.User.Id);
        _tokens.Forget(_user.User.Id);
        var revoked = await Assert.ThrowsAsync<PlatformException>(async () => await _tokens.ValidateCheckedAsync(token));
        Assert.Equal(401, revoked.Status);
        Assert.Contains("revoked", revoked.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ClusterNodes_ShareTheSigningKeyThroughTheDatabase_AndSeeAnotherNodesLogoutWithinTheCacheTime()
    {
        // Two nodes: each its own data directory, one database.
        var node1 = Node(clustered: true, Path.Combine(_directory, "node-1"));
        var node2 = Node(clustered: true, Path.Combine(_directory, "node-2"));
        var (token, _) = await node1.IssueAsync(_user);
        Assert.Equal(_user.User.Id, (await node2.ValidateAsync(token)).UserId);
        Assert.NotNull(await node2.ValidateCheckedAsync(token));

        // A single server keeps its own key in its data directory: its tokens mean nothing to the cluster.
        var (alone, _) = await _tokens.IssueAsync(_user);
        Assert.Equal(401, (await Assert.ThrowsAsync<PlatformException>(async () => await node2.ValidateAsync(alone))).Status);

        // A logout on node 1 bumps the version in the database; node 2 still trusts what it read until the entry is old.
        await _store.BumpTokenVersionAsync(_user.User.Id);
        node1.Forget(_user.User.Id);
        Assert.NotNull(await node2.ValidateCheckedAsync(token));
        _time.Advance(JwtTokens.ClusterUserCacheTime);
        var revoked = await Assert.ThrowsAsync<PlatformException>(async () => await node2.ValidateCheckedAsync(token));
        Assert.Contains("revoked", revoked.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ASingleServer_TrustsWhatItReadOfAUser_UntilItForgetsIt()
    {
        var (token, _) = await _tokens.IssueAsync(_user);
        await _tokens.ValidateAsync(token);
        _time.Advance(TimeSpan.FromMinutes(1));
        await _store.BumpTokenVersionAsync(_user.User.Id);
        // Only this process changes users on a single server, and it forgets them when it does: no read per use.
        Assert.NotNull(await _tokens.ValidateCheckedAsync(token));
    }
}
