using Taihu.Platform.BrokerUsers;
using Taihu.Platform.Storage;

namespace Taihu.Platform.Tests;

/// <summary>Tenants' broker users (migration 6).</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task BrokerUser_RoundTrips_IsScopedToItsTenant_AndGoesWithIt()
    {
        var store = new SqlTenantBrokerUserStore(Database);
        var tenant = await NewTenantAsync();
        var other = await NewTenantAsync();
        var name = UniqueName("dashboard");
        TopicRule[] rules = [new(TopicRights.Read, "city/#"), new(TopicRights.Write, "city/+/air"), new(TopicRights.Deny, "city/secret/#"), new(TopicRights.ReadWrite, "users/%u/#")];
        var user = new TenantBrokerUser(Guid.NewGuid(), tenant.Id, name, rules, T0);
        await store.CreateAsync(user, "pbkdf2-sha256$1000$salt$hash");

        var read = await store.GetAsync(user.Id, tenant.Id);
        Assert.NotNull(read);
        Assert.Equal(rules, read.Rules);
        Assert.Equal(name, read.UserName);
        Assert.Null(await store.GetAsync(user.Id, other.Id));
        Assert.Equal("pbkdf2-sha256$1000$salt$hash", (await store.FindByUserNameAsync(name))!.Value.PasswordHash);

        // Names are unique on the whole server: a user name is what a CONNECT presents.
        var clash = await Assert.ThrowsAsync<PlatformException>(() => store.CreateAsync(user with { Id = Guid.NewGuid(), TenantId = other.Id }, "x"));
        Assert.Equal(409, clash.Status);

        Assert.False(await store.UpdateAsync(user.Id, other.Id, [], "new"));
        Assert.True(await store.UpdateAsync(user.Id, tenant.Id, [new(TopicRights.Read, "a")], null));
        Assert.Equal([new TopicRule(TopicRights.Read, "a")], (await store.GetAsync(user.Id, tenant.Id))!.Rules);
        Assert.Equal("pbkdf2-sha256$1000$salt$hash", (await store.FindByUserNameAsync(name))!.Value.PasswordHash);
        Assert.Single(await store.ListAsync(tenant.Id));
        Assert.Empty(await store.ListAsync(other.Id));

        Assert.False(await store.DeleteAsync(user.Id, other.Id));
        Assert.True(await Tenants.DeleteTenantAsync(tenant.Id));
        Assert.Null(await store.FindByUserNameAsync(name));
    }
}
