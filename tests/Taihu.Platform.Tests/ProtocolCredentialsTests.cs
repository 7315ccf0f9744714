using Taihu.Platform;
using Taihu.Platform.Devices;

namespace Taihu.Platform.Tests;

/// <summary>The credentials of HJ 212 stations (MN and PW) and JT/T 808 terminals (phone number and authentication code).</summary>
public sealed class ProtocolCredentialsTests
{
    private static readonly Guid DeviceId = Guid.NewGuid();

    [Fact]
    public void Hj212_KeepsTheMn_AndOnlyAHashOfThePw()
    {
        var (stored, lookup, secret) = DeviceService.Prepare(DeviceId, new CredentialsDraft(CredentialsType.Hj212, "88888880000001", null, null, "123456", null), 20);
        Assert.Equal(new DeviceCredentials(DeviceId, CredentialsType.Hj212, "88888880000001", null, null, null), stored);
        Assert.Equal("h:88888880000001", lookup);
        Assert.NotNull(secret);
        Assert.DoesNotContain("123456", secret, StringComparison.Ordinal);
        Assert.True(CredentialHasher.VerifyPassword("123456"u8, secret));
    }

    [Theory]
    [InlineData(null, "123456")]
    [InlineData("", "123456")]
    [InlineData("8888888000000100000000001", "123456")] // 25 characters: one more than the standard's MN
    [InlineData("MN;1", "123456")] // ';' separates the data segment's fields
    [InlineData("MN 1", "123456")]
    [InlineData("88888880000001", null)]
    [InlineData("88888880000001", "12&&56")]
    public void Hj212_RefusesWhatAFrameCouldNotCarry(string? mn, string? pw)
    {
        var e = Assert.Throws<PlatformException>(() => DeviceService.Prepare(DeviceId, new CredentialsDraft(CredentialsType.Hj212, mn, null, null, pw, null), 20));
        Assert.Equal(400, e.Status);
        Assert.Contains("MN", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Jt808_KeepsThePhoneAndTheCode_AndTheLookupIgnoresLeadingZeros()
    {
        var (stored, lookup, secret) = DeviceService.Prepare(DeviceId, new CredentialsDraft(CredentialsType.Jt808, "013912345678", null, null, "AUTH-1", null), 20);
        Assert.Equal(new DeviceCredentials(DeviceId, CredentialsType.Jt808, "013912345678", null, "AUTH-1", null), stored);
        Assert.Null(secret);
        // A 2019 terminal sends the same number in 20 digits.
        Assert.Equal(lookup, DeviceService.Jt808Lookup("00000000013912345678"));
    }

    [Fact]
    public void Jt808_GeneratesACode_WhenNoneIsGiven()
    {
        var (first, _, _) = DeviceService.Prepare(DeviceId, new CredentialsDraft(CredentialsType.Jt808, "13912345678", null, null, null, null), 20);
        var (second, _, _) = DeviceService.Prepare(DeviceId, new CredentialsDraft(CredentialsType.Jt808, "13912345678", null, null, "", null), 20);
        Assert.Equal(20, first.UserName!.Length);
        Assert.NotEqual(first.UserName, second.UserName);
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("139-1234-5678")]
    [InlineData("123456789012345678901")] // 21 digits: more than 10 BCD bytes hold
    public void Jt808_RefusesAPhoneNumberThatIsNotDigits(string? phone)
    {
        var e = Assert.Throws<PlatformException>(() => DeviceService.Prepare(DeviceId, new CredentialsDraft(CredentialsType.Jt808, phone, null, null, null, null), 20));
        Assert.Equal(400, e.Status);
    }

    [Theory]
    [InlineData("HJ212", CredentialsType.Hj212)]
    [InlineData("JT808", CredentialsType.Jt808)]
    public void TypeNames_RoundTrip(string name, CredentialsType type)
    {
        Assert.True(DeviceCredentials.TryParseType(name, out var parsed));
        Assert.Equal(type, parsed);
        Assert.Equal(name, DeviceCredentials.TypeName(type));
    }
}
