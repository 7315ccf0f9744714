using Taihu.Platform.Telemetry;

namespace Taihu.Platform.Tests;

/// <summary>Attributes by scope.</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task Attributes_AreKeptPerScope_SortedByKey()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Attributes.SaveAsync(device.Seq, AttributeScope.Client,
            [new AttributeEntry("fw", T0, KvValue.Of("1.2.3")), new AttributeEntry("battery", T0, KvValue.Of(87L))]);
        await Attributes.SaveAsync(device.Seq, AttributeScope.Shared,
            [new AttributeEntry("fw", T0 + 1, KvValue.Of("2.0.0")), new AttributeEntry("interval", T0 + 1, KvValue.Of(2.5))]);
        await Attributes.SaveAsync(device.Seq, AttributeScope.Server,
            [new AttributeEntry("active", T0 + 2, KvValue.Of(true)), new AttributeEntry("config", T0 + 2, KvValue.OfJson("""{"x":1}"""))]);

        Assert.Equal(
            [new AttributeEntry("battery", T0, KvValue.Of(87L)), new AttributeEntry("fw", T0, KvValue.Of("1.2.3"))],
            await Attributes.GetAsync(device.Seq, AttributeScope.Client, null));
        Assert.Equal(
            [new AttributeEntry("fw", T0 + 1, KvValue.Of("2.0.0")), new AttributeEntry("interval", T0 + 1, KvValue.Of(2.5))],
            await Attributes.GetAsync(device.Seq, AttributeScope.Shared, null));
        Assert.Equal(
            [new AttributeEntry("active", T0 + 2, KvValue.Of(true)), new AttributeEntry("config", T0 + 2, KvValue.OfJson("""{"x":1}"""))],
            await Attributes.GetAsync(device.Seq, AttributeScope.Server, null));
        Assert.Equal([new AttributeEntry("fw", T0, KvValue.Of("1.2.3"))], await Attributes.GetAsync(device.Seq, AttributeScope.Client, ["fw", "missing"]));
    }

    [Fact]
    public async Task ActiveDevices_AreCountedPerTenant_FromTheServerAttributeActive()
    {
        var (tenant, profile, online) = await NewTenantWithDeviceAsync();
        var offline = await NewDeviceAsync(tenant.Id, profile.Id);
        await NewDeviceAsync(tenant.Id, profile.Id);
        var (otherTenant, _, elsewhere) = await NewTenantWithDeviceAsync();
        await Attributes.SaveAsync(online.Seq, AttributeScope.Server, [new AttributeEntry("active", T0, KvValue.Of(true))]);
        await Attributes.SaveAsync(offline.Seq, AttributeScope.Server, [new AttributeEntry("active", T0, KvValue.Of(false))]);
        await Attributes.SaveAsync(elsewhere.Seq, AttributeScope.Server, [new AttributeEntry("active", T0, KvValue.Of(true))]);
        // Only the server scope counts: a device's own attribute of that name is not its connectivity.
        await Attributes.SaveAsync(offline.Seq, AttributeScope.Client, [new AttributeEntry("active", T0, KvValue.Of(true))]);

        Assert.Equal(1, await Attributes.CountActiveDevicesAsync(tenant.Id));
        Assert.Equal(1, await Attributes.CountActiveDevicesAsync(otherTenant.Id));
        Assert.Equal(0, await Attributes.CountActiveDevicesAsync(Guid.NewGuid()));
    }

    [Fact]
    public async Task Attributes_OfManyDevices_AreReadInOneCall_ByDevice_OnlyTheKeysAsked()
    {
        var (tenant, profile, first) = await NewTenantWithDeviceAsync();
        var second = await NewDeviceAsync(tenant.Id, profile.Id);
        var silent = await NewDeviceAsync(tenant.Id, profile.Id);
        var other = await NewDeviceAsync(tenant.Id, profile.Id);
        await Attributes.SaveAsync(first.Seq, AttributeScope.Server,
            [new AttributeEntry("lastActivityTime", T0, KvValue.Of(T0)), new AttributeEntry("active", T0, KvValue.Of(true)), new AttributeEntry("room", T0, KvValue.Of("B"))]);
        await Attributes.SaveAsync(second.Seq, AttributeScope.Server, [new AttributeEntry("active", T0 + 1, KvValue.Of(false))]);
        await Attributes.SaveAsync(second.Seq, AttributeScope.Client, [new AttributeEntry("active", T0, KvValue.Of(true))]);
        await Attributes.SaveAsync(other.Seq, AttributeScope.Server, [new AttributeEntry("active", T0, KvValue.Of(true))]);

        var found = await Attributes.GetManyAsync([first.Seq, second.Seq, silent.Seq], AttributeScope.Server, ["active", "lastActivityTime"]);

        Assert.Equal([first.Seq, second.Seq], found.Keys.Order());
        Assert.Equal([new AttributeEntry("active", T0, KvValue.Of(true)), new AttributeEntry("lastActivityTime", T0, KvValue.Of(T0))], found[first.Seq]);
        Assert.Equal([new AttributeEntry("active", T0 + 1, KvValue.Of(false))], found[second.Seq]);
        Assert.Empty(await Attributes.GetManyAsync([], AttributeScope.Server, null));
    }

    [Fact]
    public async Task Attributes_AreSortedByOrdinalKey_WhateverTheDatabaseCollation()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        string[] keys = ["b", "B", "a", "A", "_x", "10", "9", "é", "e", "Z", "a-b", "ab"];
        await Attributes.SaveAsync(device.Seq, AttributeScope.Client, keys.Select(k => new AttributeEntry(k, T0, KvValue.Of(1L))).ToList());

        Assert.Equal(keys.Order(StringComparer.Ordinal), (await Attributes.GetAsync(device.Seq, AttributeScope.Client, null)).Select(e => e.Key));
    }

    [Fact]
    public async Task Attributes_Save_ReplacesValueTypeAndTime()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Attributes.SaveAsync(device.Seq, AttributeScope.Shared, [new AttributeEntry("mode", T0, KvValue.Of(1L))]);
        await Attributes.SaveAsync(device.Seq, AttributeScope.Shared, [new AttributeEntry("mode", T0 + 5, KvValue.Of("eco"))]);

        Assert.Equal([new AttributeEntry("mode", T0 + 5, KvValue.Of("eco"))], await Attributes.GetAsync(device.Seq, AttributeScope.Shared, null));
    }

    /// <summary>
    /// Many devices' changes in one call (a connectivity flush writes every connected device's): each device, scope
    /// and key gets its own row with every value type, and a key changed twice in the call, in two changes of the
    /// same device, keeps the later value.
    /// </summary>
    [Fact]
    public async Task Attributes_ManyDevicesInOneCall_EachRowItsOwn_AndAKeyChangedTwiceKeepsTheLater()
    {
        var (tenant, profile, first) = await NewTenantWithDeviceAsync();
        var second = await NewDeviceAsync(tenant.Id, profile.Id, "second");
        await Attributes.SaveManyAsync(
        [
            new AttributeChange(first.Seq, AttributeScope.Server, [new AttributeEntry("active", T0, KvValue.Of(true)), new AttributeEntry("lastConnectTime", T0, KvValue.Of(T0))]),
            new AttributeChange(second.Seq, AttributeScope.Server, [new AttributeEntry("active", T0, KvValue.Of(true)), new AttributeEntry("ratio", T0, KvValue.Of(0.25))]),
            new AttributeChange(second.Seq, AttributeScope.Client, [new AttributeEntry("fw", T0, KvValue.Of("1.0")), new AttributeEntry("cfg", T0, KvValue.OfJson("""{"a":[1]}"""))]),
            new AttributeChange(first.Seq, AttributeScope.Server, [new AttributeEntry("active", T0 + 1, KvValue.Of(false))]),
        ]);

        Assert.Equal(
            [new AttributeEntry("active", T0 + 1, KvValue.Of(false)), new AttributeEntry("lastConnectTime", T0, KvValue.Of(T0))],
            await Attributes.GetAsync(first.Seq, AttributeScope.Server, null));
        Assert.Equal(
            [new AttributeEntry("active", T0, KvValue.Of(true)), new AttributeEntry("ratio", T0, KvValue.Of(0.25))],
            await Attributes.GetAsync(second.Seq, AttributeScope.Server, null));
        Assert.Equal(
            [new AttributeEntry("cfg", T0, KvValue.OfJson("""{"a":[1]}""")), new AttributeEntry("fw", T0, KvValue.Of("1.0"))],
            await Attributes.GetAsync(second.Seq, AttributeScope.Client, null));
        Assert.Empty(await Attributes.GetAsync(first.Seq, AttributeScope.Client, null));
    }

    [Fact]
    public async Task Attributes_DuplicateKeyInOneBatch_LastWins()
    {
        var (_, _, device) = await NewTenantWithDeviceAsync();
        await Attributes.SaveAsync(device.Seq, AttributeScope.Client,
            [new AttributeEntry("x", T0, KvValue.Of(1L)), new AttributeEntry("x", T0, KvValue.Of(false))]);

        Assert.Equal([new AttributeEntry("x", T0, KvValue.Of(false))], await Attributes.GetAsync(device.Seq, AttributeScope.Client, null));
    }

    [Fact]
    public async Task Attributes_Delete_OnlyInTheScopeAndDevice()
    {
        var (_, profile, device) = await NewTenantWithDeviceAsync();
        var other = await NewDeviceAsync(device.TenantId, profile.Id);
        var entry = new AttributeEntry("k", T0, KvValue.Of(1L));
        await Attributes.SaveAsync(device.Seq, AttributeScope.Client, [entry, new AttributeEntry("j", T0, KvValue.Of(2L))]);
        await Attributes.SaveAsync(device.Seq, AttributeScope.Server, [entry]);
        await Attributes.SaveAsync(other.Seq, AttributeScope.Client, [entry]);

        Assert.Equal(1, await Attributes.DeleteAsync(device.Seq, AttributeScope.Client, ["k", "missing"]));
        Assert.Equal(0, await Attributes.DeleteAsync(device.Seq, AttributeScope.Shared, ["k"]));

        Assert.Equal(["j"], (await Attributes.GetAsync(device.Seq, AttributeScope.Client, null)).Select(e => e.Key));
        Assert.Equal([entry], await Attributes.GetAsync(device.Seq, AttributeScope.Server, null));
        Assert.Equal([entry], await Attributes.GetAsync(other.Seq, AttributeScope.Client, null));
    }

    [Fact]
    public async Task Attributes_OfOneDevice_AreNotAnothers()
    {
        var (_, profile, device) = await NewTenantWithDeviceAsync();
        var other = await NewDeviceAsync(device.TenantId, profile.Id);
        await Attributes.SaveAsync(device.Seq, AttributeScope.Shared, [new AttributeEntry("secret", T0, KvValue.Of("mine"))]);

        Assert.Empty(await Attributes.GetAsync(other.Seq, AttributeScope.Shared, null));
        Assert.Empty(await Attributes.GetAsync(device.Seq, AttributeScope.Client, null));
        await Attributes.SaveAsync(device.Seq, AttributeScope.Shared, []);
        Assert.Single(await Attributes.GetAsync(device.Seq, AttributeScope.Shared, null));
    }
}
