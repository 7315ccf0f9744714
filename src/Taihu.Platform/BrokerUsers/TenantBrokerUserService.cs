using System.Text;
using Taihu.Broker.Extensibility;
using Taihu.Mqtt.Topics;
using Taihu.Platform.Audit;
using Taihu.Platform.Devices;
using Taihu.Platform.Storage;
using Taihu.Platform.Tenants;

namespace Taihu.Platform.BrokerUsers;

/// <summary>A rule as the API takes it: <c>{"access":"read","topic":"city/#"}</c>.</summary>
public sealed record TopicRuleInput(string? Access, string? Topic);

/// <summary>
/// Broker users of tenants: a tenant administrator creates them with a password and topic rules; they connect
/// into the tenant's namespace and reach plain topics only (rules may not name <c>$</c> topics, and wildcards never
/// match them, so a device's <c>$devices/...</c> stay out of reach). Passwords are kept as device passwords are
/// (salted PBKDF2, see <see cref="CredentialHasher"/>) and a verified one is remembered, so a reconnect storm costs
/// microseconds. A changed password or rule set applies from the user's next CONNECT.
/// </summary>
public sealed class TenantBrokerUserService(ITenantBrokerUserStore store, BrokerUserDirectory fileUsers, IAuditLog audit, TimeProvider time)
{
    public const int MaximumRules = 100;
    public const int MinimumPasswordLength = 8;
    private const string EntityType = "MQTT_USER";
    private const string CacheLookupPrefix = "tenant-mqtt-user/";

    private readonly VerifiedCredentialCache _verified = new(10_000);

    public async Task<TenantBrokerUser> CreateAsync(Caller caller, string? userName, string? password, IReadOnlyList<TopicRuleInput>? rules, CancellationToken cancellationToken)
    {
        caller.RequireTenantAdmin();
        var name = ValidUserName(userName);
        var hash = CredentialHasher.HashPassword(ValidPassword(password));
        var user = new TenantBrokerUser(Guid.NewGuid(), caller.TenantId!.Value, name, ValidRules(rules ?? []), time.GetUtcNow().ToUnixTimeMilliseconds());
        if (fileUsers.HasUser(name))
        {
            // A user of the password file would be checked first and this one could never log in.
            throw PlatformException.Conflict(SqlTenantBrokerUserStore.Conflict);
        }

        await store.CreateAsync(user, hash, cancellationToken);
        await audit.WriteAsync(caller, "ADDED", EntityType, user.Id.ToString(), name, cancellationToken: cancellationToken);
        return user;
    }

    public async Task<TenantBrokerUser> UpdateAsync(Caller caller, Guid id, string? password, IReadOnlyList<TopicRuleInput>? rules, CancellationToken cancellationToken)
    {
        caller.RequireTenantAdmin();
        var tenantId = caller.TenantId!.Value;
        var existing = await store.GetAsync(id, tenantId, cancellationToken) ?? throw PlatformException.NotFound("The MQTT user");
        var newRules = rules is null ? existing.Rules : ValidRules(rules);
        var hash = password is null ? null : CredentialHasher.HashPassword(ValidPassword(password));
        if (!await store.UpdateAsync(id, tenantId, newRules, hash, cancellationToken))
        {
            throw PlatformException.NotFound("The MQTT user");
        }

        await audit.WriteAsync(caller, "UPDATED", EntityType, id.ToString(), existing.UserName, cancellationToken: cancellationToken);
        return existing with { Rules = newRules };
    }

    public async Task<TenantBrokerUser> GetAsync(Caller caller, Guid id, CancellationToken cancellationToken)
    {
        caller.RequireTenantAdmin();
        return await store.GetAsync(id, caller.TenantId!.Value, cancellationToken) ?? throw PlatformException.NotFound("The MQTT user");
    }

    public Task<IReadOnlyList<TenantBrokerUser>> ListAsync(Caller caller, CancellationToken cancellationToken)
    {
        caller.RequireTenantAdmin();
        return store.ListAsync(caller.TenantId!.Value, cancellationToken);
    }

    public async Task DeleteAsync(Caller caller, Guid id, CancellationToken cancellationToken)
    {
        caller.RequireTenantAdmin();
        var existing = await store.GetAsync(id, caller.TenantId!.Value, cancellationToken) ?? throw PlatformException.NotFound("The MQTT user");
        await store.DeleteAsync(id, caller.TenantId!.Value, cancellationToken);
        await audit.WriteAsync(caller, "DELETED", EntityType, id.ToString(), existing.UserName, cancellationToken: cancellationToken);
    }

    /// <summary>The owner of a tenant broker user's MQTT sessions (<see cref="ClientIdentity.SessionOwner"/>).</summary>
    public static string SessionOwner(Guid userId) => "mqtt-user/" + userId.ToString("N");

    /// <summary>Whether a connection belongs to a broker user of <paramref name="tenantId"/>.</summary>
    public static bool IsTenantUser(ClientIdentity identity, Guid tenantId) =>
        identity.State is BrokerUserSession && identity.Namespace == DeviceSession.Namespace(tenantId);

    /// <summary>The identity of a tenant's broker user whose password is right, or null.</summary>
    public async ValueTask<ClientIdentity?> AuthenticateAsync(string userName, ReadOnlyMemory<byte> password, string clientId, CancellationToken cancellationToken)
    {
        var found = await store.FindByUserNameAsync(userName, cancellationToken);
        if (found is not { } row)
        {
            return null;
        }

        var lookup = CacheLookupPrefix + userName;
        if (!_verified.IsVerified(lookup, password.Span, row.PasswordHash))
        {
            if (!CredentialHasher.VerifyPassword(password.Span, row.PasswordHash))
            {
                return null;
            }

            _verified.Add(lookup, password.Span, row.PasswordHash);
        }

        var user = row.User;
        return new ClientIdentity(DeviceSession.Namespace(user.TenantId), userName)
        {
            State = new BrokerUserSession(userName, Compile(user, clientId)),
            SessionOwner = SessionOwner(user.Id),
        };
    }

    private static TopicAccess Compile(TenantBrokerUser user, string clientId)
    {
        var acl = new StringBuilder();
        foreach (var rule in user.Rules)
        {
            acl.Append("pattern ").Append(TenantBrokerUser.AccessName(rule.Rights)).Append(' ').Append(rule.Filter).Append('\n');
        }

        return MosquittoAclFile.Parse("rules", acl.ToString()).Compile(user.UserName, clientId);
    }

    private static string ValidUserName(string? userName)
    {
        if (string.IsNullOrEmpty(userName) || userName.Length > 255 || MosquittoPasswordFile.HasControlCharacters(userName) || userName.Trim() != userName)
        {
            throw PlatformException.BadRequest("userName is 1 to 255 characters without control characters or surrounding spaces.");
        }

        if (userName == "provision")
        {
            throw PlatformException.BadRequest("userName 'provision' is reserved for device provisioning.");
        }

        return userName;
    }

    private static string ValidPassword(string? password)
    {
        if (password is null || password.Length < MinimumPasswordLength || password.Length > 1024)
        {
            throw PlatformException.BadRequest($"password is {MinimumPasswordLength} to 1024 characters.");
        }

        Sql.RequireStorableText(password);
        return password;
    }

    private static IReadOnlyList<TopicRule> ValidRules(IReadOnlyList<TopicRuleInput> rules)
    {
        if (rules.Count > MaximumRules)
        {
            throw PlatformException.BadRequest($"At most {MaximumRules} rules.");
        }

        var valid = new List<TopicRule>(rules.Count);
        foreach (var rule in rules)
        {
            var rights = TenantBrokerUser.ParseAccess(rule?.Access)
                ?? throw PlatformException.BadRequest("access is read, write, readwrite or deny.");
            var topic = rule!.Topic ?? "";
            var shape = topic.Replace("%u", "u", StringComparison.Ordinal).Replace("%c", "c", StringComparison.Ordinal);
            if (topic.Length is 0 or > 4096 || topic.Trim() != topic || MosquittoPasswordFile.HasControlCharacters(topic) || !TopicValidator.IsValidTopicFilter(shape))
            {
                throw PlatformException.BadRequest($"'{topic}' is not a valid topic filter.");
            }

            if (topic[0] == '$')
            {
                throw PlatformException.BadRequest("Rules may not name $ topics: those are the broker's and the devices' own.");
            }

            valid.Add(new TopicRule(rights, topic));
        }

        return valid;
    }
}
