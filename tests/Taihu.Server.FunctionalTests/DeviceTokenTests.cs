using System.Net;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>Access tokens: chosen ones have a minimum length and a safe alphabet; generated ones are 20 random characters.</summary>
public sealed class DeviceTokenTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    [Theory]
    [InlineData("7")]
    [InlineData("1234567")]
    [InlineData("has space1")]
    [InlineData("slash/in-it")]
    [InlineData("tab\tin-it")]
    [InlineData("ünïcödé-token")]
    public async Task ChosenToken_ThatIsShortOrOutsideTheAlphabet_Is400(string token)
    {
        var response = await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/device?accessToken={Uri.EscapeDataString(token)}", new { name = "weak-" + Guid.NewGuid().ToString("N")[..8] });
        var problem = await PlatformApi.ExpectProblemAsync(response, HttpStatusCode.BadRequest);
        Assert.Contains("8 to 255 characters", problem["message"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task ChosenToken_OfTooManyCharacters_Is400_AndOf8Or255IsAccepted()
    {
        var response = await fixture.Admin.SendAsync(HttpMethod.Post, $"/api/device?accessToken={new string('x', 256)}", new { name = "long-" + Guid.NewGuid().ToString("N")[..8] });
        await PlatformApi.ExpectProblemAsync(response, HttpStatusCode.BadRequest);
        var eight = "A1-" + Guid.NewGuid().ToString("N")[..5];
        Assert.Equal(eight, (await fixture.Admin.CreateDeviceAsync("eight-" + eight, eight)).Token);
        var longest = Guid.NewGuid().ToString("N") + new string('~', 255 - 32);
        Assert.Equal(longest, (await fixture.Admin.CreateDeviceAsync("longest-" + Guid.NewGuid().ToString("N")[..8], longest)).Token);
    }

    [Fact]
    public async Task ChosenToken_ThroughTheCredentialsCall_FollowsTheSameRule()
    {
        var (id, _) = await fixture.Admin.CreateDeviceAsync("recredential-" + Guid.NewGuid().ToString("N")[..8]);
        var response = await fixture.Admin.SendAsync(HttpMethod.Post, "/api/device/credentials", new { deviceId = new { id, entityType = "DEVICE" }, credentialsType = "ACCESS_TOKEN", credentialsId = "short" });
        await PlatformApi.ExpectProblemAsync(response, HttpStatusCode.BadRequest);
    }

    [Fact]
    public async Task GeneratedTokens_Are20RandomAlphanumericCharacters()
    {
        var tokens = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < 5; i++)
        {
            var (_, token) = await fixture.Admin.CreateDeviceAsync("generated-" + Guid.NewGuid().ToString("N")[..8]);
            Assert.Matches("^[A-Za-z0-9]{20}$", token);
            Assert.True(tokens.Add(token));
        }
    }
}
