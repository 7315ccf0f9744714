using System.Net;
using Microsoft.Extensions.Options;

namespace Taihu.Platform.Security;

/// <summary>
/// The limit on failed device authentications per source address, shared by MQTT CONNECT, the HTTP device API and
/// credential conflicts in the management API (a conflict tells that a token exists, so it is a guess as well).
/// </summary>
public sealed class DeviceAuthenticationLimiter(IOptions<SecurityOptions> options, TimeProvider time)
{
    private readonly AttemptLimiter<IPAddress> _limiter = new(
        new TokenBucketPolicy<IPAddress>(options.Value.DeviceAuthFailuresPerMinute), options.Value.MaximumTrackedAddresses, time);

    /// <summary>Reserves a check for the address (see <see cref="AttemptLimiter{TKey}"/>); settle it with <see cref="Release"/>.</summary>
    public ValueTask<AttemptPermit> AcquireAsync(IPAddress address, CancellationToken cancellationToken = default) => _limiter.AcquireAsync(address, cancellationToken);

    public void Release(IPAddress address, AttemptOutcome outcome) => _limiter.Release(address, outcome);

    /// <summary>The refusal, naming the limit.</summary>
    public static string Refusal(AttemptPermit permit) =>
        $"Too many failed authentications from this address; try again in {permit.RetryAfterSeconds} s.";

    /// <summary>Reserves a check or throws 429 naming the limit.</summary>
    public async ValueTask<IPAddress> AcquireOrThrowAsync(IPAddress? remote, CancellationToken cancellationToken)
    {
        var address = SourceAddress.Key(remote);
        var permit = await AcquireAsync(address, cancellationToken);
        return permit.Granted ? address : throw PlatformException.TooManyRequests(Refusal(permit), permit.RetryAfter);
    }
}

/// <summary>
/// The limits on failed logins: per account (a few failures in a row, then a doubling wait) and per source address
/// (a token bucket over all accounts). Unknown accounts are limited exactly as known ones, so that the answers do
/// not tell which exist. Kept in memory per server.
/// </summary>
public sealed class LoginLimiter(IOptions<SecurityOptions> options, TimeProvider time)
{
    private readonly AttemptLimiter<string> _accounts = new(
        new DoublingBackoffPolicy<string>(options.Value.FailedLoginsBeforeBackoff, options.Value.LoginBackoff), options.Value.MaximumTrackedAddresses, time);

    private readonly AttemptLimiter<IPAddress> _addresses = new(
        new TokenBucketPolicy<IPAddress>(options.Value.LoginFailuresPerAddressPerMinute), options.Value.MaximumTrackedAddresses, time);

    /// <summary>Reserves a password check for the account from the address, or throws 429 (the same answer whichever limit refused).</summary>
    public async ValueTask<(string Account, IPAddress Address)> AcquireAsync(string account, IPAddress? remote, CancellationToken cancellationToken)
    {
        var address = SourceAddress.Key(remote);
        var byAddress = await _addresses.AcquireAsync(address, cancellationToken);
        if (!byAddress.Granted)
        {
            throw Refusal(byAddress);
        }

        AttemptPermit byAccount;
        try
        {
            byAccount = await _accounts.AcquireAsync(account, cancellationToken);
        }
        catch
        {
            _addresses.Release(address, AttemptOutcome.NotChecked);
            throw;
        }

        if (!byAccount.Granted)
        {
            _addresses.Release(address, AttemptOutcome.NotChecked);
            throw Refusal(byAccount);
        }

        return (account, address);
    }

    public void Release((string Account, IPAddress Address) permit, AttemptOutcome outcome)
    {
        _accounts.Release(permit.Account, outcome);
        _addresses.Release(permit.Address, outcome);
    }

    private static PlatformException Refusal(AttemptPermit permit) =>
        PlatformException.TooManyRequests($"Too many failed logins; try again in {permit.RetryAfterSeconds} s.", TimeSpan.FromSeconds(permit.RetryAfterSeconds));
}
