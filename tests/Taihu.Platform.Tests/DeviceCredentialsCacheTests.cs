using Microsoft.Extensions.Time.Testing;
using Taihu.Platform.Devices;
using Taihu.Platform.Events;

namespace Taihu.Platform.Tests;

/// <summary>The devices kept by their credentials' lookup keys: lifetime, bound, and what empties it.</summary>
public sealed class DeviceCredentialsCacheTests
{
    private readonly FakeTimeProvider _time = new();

    private static StoredCredentials Found(string name) =>
        new(new Device(1, Guid.NewGuid(), Guid.NewGuid(), name, "default", null, Guid.NewGuid(), null, false, null, 0), CredentialsType.AccessToken, null, null, null);

    [Fact]
    public void AnEntry_LastsItsLifetime()
    {
        var cache = new DeviceCredentialsCache(_time, 10, TimeSpan.FromSeconds(30));
        var meter = Found("meter");
        cache.Add("t:a", meter, cache.Generation);

        Assert.True(cache.TryGet("t:a", out var found));
        Assert.Same(meter, found);
        Assert.False(cache.TryGet("t:b", out _));
        _time.Advance(TimeSpan.FromSeconds(30));
        Assert.False(cache.TryGet("t:a", out _));
    }

    [Fact]
    public void WhatWasReadBeforeAnEmptying_IsNotKept()
    {
        var cache = new DeviceCredentialsCache(_time, 10, TimeSpan.FromSeconds(30));
        var before = cache.Generation;
        cache.Clear(); // the change committed while the lookup was reading the old row

        cache.Add("t:a", Found("old"), before);

        Assert.False(cache.TryGet("t:a", out _));
        Assert.Equal(0, cache.Count);
        cache.Add("t:a", Found("new"), cache.Generation);
        Assert.True(cache.TryGet("t:a", out var found));
        Assert.Equal("new", found!.Device.Name);
    }

    [Fact]
    public void ADeviceOrProfileChangedOnAnotherNode_EmptiesIt()
    {
        var signal = new EventSignal();
        var cache = new DeviceCredentialsCache(_time, 10, TimeSpan.FromSeconds(30), signal);
        cache.Add("t:a", Found("a"), cache.Generation);
        signal.NotifyDeviceChanged(42);
        Assert.False(cache.TryGet("t:a", out _));

        cache.Add("t:a", Found("a"), cache.Generation);
        signal.NotifyProfileChanged(Guid.NewGuid());
        Assert.False(cache.TryGet("t:a", out _));
    }

    [Fact]
    public void WhenFull_ItIsEmptiedAndRefilled()
    {
        var cache = new DeviceCredentialsCache(_time, 3, TimeSpan.FromSeconds(30));
        for (var i = 0; i < 3; i++)
        {
            cache.Add("t:" + i, Found("d" + i), cache.Generation);
        }

        Assert.Equal(3, cache.Count);
        cache.Add("t:3", Found("d3"), cache.Generation);
        Assert.Equal(1, cache.Count);
        Assert.True(cache.TryGet("t:3", out _));
        Assert.False(cache.TryGet("t:0", out _));
    }

    [Fact]
    public void ZeroSecondsOrZeroSize_KeepsNothing()
    {
        foreach (var cache in (DeviceCredentialsCache[])[new(_time, 10, TimeSpan.Zero), new(_time, 0, TimeSpan.FromSeconds(30))])
        {
            Assert.False(cache.Enabled);
            cache.Add("t:a", Found("a"), cache.Generation);
            Assert.False(cache.TryGet("t:a", out _));
        }
    }
}
