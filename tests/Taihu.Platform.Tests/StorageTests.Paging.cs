using Taihu.Platform.Devices;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.Tests;

/// <summary>Paging and text search of the list calls.</summary>
public abstract partial class StorageTests
{
    [Fact]
    public async Task Paging_CountsPagesAndStopsAtTheEnd()
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id);
        for (var i = 0; i < 23; i++)
        {
            await NewDeviceAsync(tenant.Id, profile.Id, $"device-{i:D2}");
        }

        var first = await Devices.ListDevicesAsync(tenant.Id, new PageRequest(PageSize: 10));
        Assert.Equal((23L, 3, true), (first.TotalElements, first.TotalPages, first.HasNext));
        Assert.Equal(Enumerable.Range(0, 10).Select(i => $"device-{i:D2}"), first.Data.Select(d => d.Name));

        var third = await Devices.ListDevicesAsync(tenant.Id, new PageRequest(PageSize: 10, Page: 2));
        Assert.Equal(["device-20", "device-21", "device-22"], third.Data.Select(d => d.Name));
        Assert.False(third.HasNext);

        var beyond = await Devices.ListDevicesAsync(tenant.Id, new PageRequest(PageSize: 10, Page: 7));
        Assert.Empty(beyond.Data);
        Assert.Equal(23, beyond.TotalElements);
        Assert.False(beyond.HasNext);

        // Out-of-range page sizes and pages are clamped, not passed to the database.
        Assert.Single((await Devices.ListDevicesAsync(tenant.Id, new PageRequest(PageSize: 0))).Data);
        Assert.Equal(23, (await Devices.ListDevicesAsync(tenant.Id, new PageRequest(PageSize: int.MaxValue))).Data.Count);
        Assert.Equal("device-00", (await Devices.ListDevicesAsync(tenant.Id, new PageRequest(PageSize: 5, Page: -3))).Data[0].Name);
        Assert.Empty((await Devices.ListDevicesAsync(tenant.Id, new PageRequest(PageSize: 1000, Page: int.MaxValue))).Data);
    }

    [Fact]
    public async Task Paging_TextSearch_IgnoresCase()
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id);
        await NewDeviceAsync(tenant.Id, profile.Id, "Thermometer Kitchen");
        await NewDeviceAsync(tenant.Id, profile.Id, "thermostat hall");
        await NewDeviceAsync(tenant.Id, profile.Id, "Valve");

        var found = await Devices.ListDevicesAsync(tenant.Id, new PageRequest(TextSearch: "THERMO"));
        Assert.Equal(["Thermometer Kitchen", "thermostat hall"], found.Data.Select(d => d.Name).Order(StringComparer.Ordinal));
        Assert.Equal(2, found.TotalElements);
        Assert.Equal(["Valve"], (await Devices.ListDevicesAsync(tenant.Id, new PageRequest(TextSearch: "lv"))).Data.Select(d => d.Name));
        Assert.Equal(3, (await Devices.ListDevicesAsync(tenant.Id, new PageRequest(TextSearch: ""))).TotalElements);
    }

    [Theory]
    [InlineData("école", "École Zürich")]
    [InlineData("ZÜRICH", "École Zürich")]
    [InlineData("straße", "Straße 5")]
    [InlineData("ΘΕΡΜΌΜΕ", "θερμόμετρο")]
    [InlineData("ΌΜΕ", "θερμόμετρο")]
    [InlineData("中文", "设备中文名")]
    public async Task Paging_TextSearch_IgnoresCaseBeyondAscii(string search, string expected)
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id);
        foreach (var name in new[] { "École Zürich", "Ecole Zurich", "Straße 5", "θερμόμετρο", "设备中文名" })
        {
            await NewDeviceAsync(tenant.Id, profile.Id, name);
        }

        Assert.Equal([expected], (await Devices.ListDevicesAsync(tenant.Id, new PageRequest(TextSearch: search))).Data.Select(d => d.Name));
    }

    [Theory]
    [InlineData("%", "100% sure")]
    [InlineData("0%", "100% sure")]
    [InlineData("_", "under_score")]
    [InlineData("r_s", "under_score")]
    [InlineData("\\", "back\\slash")]
    [InlineData("k\\s", "back\\slash")]
    [InlineData("\\%", null)]
    [InlineData("[a-z]", "set[a-z]")]
    [InlineData("*", "star*")]
    [InlineData("'", "it's")]
    public async Task Paging_TextSearch_TakesWildcardsLiterally(string search, string? only)
    {
        var tenant = await NewTenantAsync();
        var profile = await NewProfileAsync(tenant.Id);
        string[] names = ["100% sure", "1000 sure", "under_score", "underXscore", "back\\slash", "backslash", "set[a-z]", "setb", "star*", "stars", "it's", "its"];
        foreach (var name in names)
        {
            await NewDeviceAsync(tenant.Id, profile.Id, name);
            await NewProfileAsync(tenant.Id, "profile " + name);
            await Tenants.CreateTenantAsync(new Tenant(Guid.NewGuid(), "tenant " + name, T0, null));
            await Tenants.CreateUserAsync(new User(Guid.NewGuid(), tenant.Id, name.Replace(' ', '.') + "@example.com", Authority.Viewer, null, null, T0, true), null, null);
        }

        string[] expected = only is null ? [] : [only];
        var devices = await Devices.ListDevicesAsync(tenant.Id, new PageRequest(TextSearch: search));
        Assert.Equal(expected, devices.Data.Select(d => d.Name));
        Assert.Equal(expected.Length, devices.TotalElements);
        Assert.Equal(expected.Select(n => "profile " + n), (await Devices.ListProfilesAsync(tenant.Id, new PageRequest(TextSearch: search))).Data.Select(p => p.Name));
        Assert.Equal(expected.Select(n => "tenant " + n), (await Tenants.ListTenantsAsync(new PageRequest(TextSearch: search))).Data.Select(t => t.Title));
        Assert.Equal(expected.Select(n => n.Replace(' ', '.') + "@example.com"),
            (await Tenants.ListUsersAsync(tenant.Id, new PageRequest(TextSearch: search))).Data.Select(u => u.Email));
    }

    [Fact]
    public async Task Paging_Tenants_And_Profiles_Sort()
    {
        await Tenants.CreateTenantAsync(new Tenant(Guid.NewGuid(), "b-tenant", T0 + 1, null));
        await Tenants.CreateTenantAsync(new Tenant(Guid.NewGuid(), "a-tenant", T0 + 2, null));
        await Tenants.CreateTenantAsync(new Tenant(Guid.NewGuid(), "c-tenant", T0, null));

        Assert.Equal(["a-tenant", "b-tenant", "c-tenant"], (await Tenants.ListTenantsAsync(new PageRequest())).Data.Select(t => t.Title));
        Assert.Equal(["c-tenant", "b-tenant", "a-tenant"], (await Tenants.ListTenantsAsync(new PageRequest(Descending: true))).Data.Select(t => t.Title));
        Assert.Equal(["c-tenant", "b-tenant", "a-tenant"], (await Tenants.ListTenantsAsync(new PageRequest(SortProperty: "createdTime"))).Data.Select(t => t.Title));
        var page = await Tenants.ListTenantsAsync(new PageRequest(PageSize: 2, Page: 1));
        Assert.Equal(["c-tenant"], page.Data.Select(t => t.Title));
        Assert.Equal((3L, 2, false), (page.TotalElements, page.TotalPages, page.HasNext));

        var tenant = (await Tenants.ListTenantsAsync(new PageRequest())).Data[0];
        await NewProfileAsync(tenant.Id, "y-profile", createdTime: T0);
        await NewProfileAsync(tenant.Id, "x-profile", createdTime: T0 + 1);
        static string[] Names(Page<DeviceProfile> p) => p.Data.Select(x => x.Name).ToArray();
        Assert.Equal(["x-profile", "y-profile"], Names(await Devices.ListProfilesAsync(tenant.Id, new PageRequest())));
        Assert.Equal(["y-profile", "x-profile"], Names(await Devices.ListProfilesAsync(tenant.Id, new PageRequest(SortProperty: "createdTime"))));
    }
}
