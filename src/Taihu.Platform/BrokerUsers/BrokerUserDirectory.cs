using Microsoft.Extensions.Options;
using Taihu.Broker.Extensibility;
using Taihu.Platform.Devices;

namespace Taihu.Platform.BrokerUsers;

/// <summary>What the platform keeps with the connection of a broker user (or, under an ACL file, an anonymous client).</summary>
public sealed class BrokerUserSession(string? userName, TopicAccess access)
{
    /// <summary>Null for an anonymous client.</summary>
    public string? UserName { get; } = userName;

    public TopicAccess Access { get; } = access;
}

/// <summary>
/// Plain broker users (city systems, dashboards, bridges that are not devices) from a Mosquitto password file
/// (<c>Security:MqttPasswordFile</c>) and their rights from a Mosquitto ACL file (<c>Security:MqttAclFile</c>),
/// both read once at start. They connect into the default namespace, as anonymous clients do, and never reach a
/// tenant's topics. Without an ACL file a user may use every topic of that namespace, as in Mosquitto; with one,
/// a client (anonymous ones too) has only the rights the file gives it.
/// </summary>
public sealed class BrokerUserDirectory
{
    private const string CacheLookupPrefix = "mqtt-user/";

    private readonly IReadOnlyDictionary<string, MosquittoPasswordHash> _users;
    private readonly MosquittoAclFile? _acl;
    private readonly VerifiedCredentialCache _verified;
    // Checked when the user name is unknown, so that a refusal takes as long whether or not the user exists.
    private readonly MosquittoPasswordHash _unknownUser;

    public BrokerUserDirectory(IOptions<SecurityOptions> options)
        : this(options.Value.MqttPasswordFile is { Length: > 0 } passwords ? MosquittoPasswordFile.Load(passwords) : new Dictionary<string, MosquittoPasswordHash>(),
            options.Value.MqttAclFile is { Length: > 0 } acl ? MosquittoAclFile.Load(acl) : null,
            options.Value.CredentialCacheSize)
    {
    }

    public BrokerUserDirectory(IReadOnlyDictionary<string, MosquittoPasswordHash> users, MosquittoAclFile? acl, int cacheSize)
    {
        _users = users;
        _acl = acl;
        _verified = new VerifiedCredentialCache(cacheSize);
        _unknownUser = MosquittoPasswordHash.TryParse("$7$101$AAAAAAAAAAAAAAAA$" + Convert.ToBase64String(new byte[64]), out var unknown, out _)
            ? unknown!
            : throw new InvalidOperationException("The placeholder hash does not parse.");
    }

    /// <summary>Whether the password file lists <paramref name="userName"/>.</summary>
    public bool HasUser(string userName) => _users.ContainsKey(userName);

    /// <summary>Whether an ACL file governs the default namespace (anonymous clients included).</summary>
    public bool HasAccessRules => _acl is not null;

    /// <summary>Problems with the two files, each naming its setting, file and line; empty when both load.</summary>
    public static IReadOnlyList<string> FindProblems(SecurityOptions options)
    {
        var problems = new List<string>();
        try
        {
            if (options.MqttPasswordFile is { Length: > 0 } passwords)
            {
                MosquittoPasswordFile.Load(passwords);
            }
        }
        catch (BrokerUserFileException e)
        {
            problems.Add($"Security:MqttPasswordFile: {e.Message}");
        }

        try
        {
            if (options.MqttAclFile is { Length: > 0 } acl)
            {
                MosquittoAclFile.Load(acl);
            }
        }
        catch (BrokerUserFileException e)
        {
            problems.Add($"Security:MqttAclFile: {e.Message}");
        }

        return problems;
    }

    /// <summary>
    /// The identity of a broker user whose password is right, or null (unknown user or wrong password: the caller
    /// answers both alike). A password verified before is recognised from the cache without hashing again.
    /// </summary>
    public ClientIdentity? Authenticate(string userName, ReadOnlySpan<byte> password, string clientId)
    {
        if (!_users.TryGetValue(userName, out var stored))
        {
            _unknownUser.Verify(password);
            return null;
        }

        var lookup = CacheLookupPrefix + userName;
        if (!_verified.IsVerified(lookup, password, stored.Text))
        {
            if (!stored.Verify(password))
            {
                return null;
            }

            _verified.Add(lookup, password, stored.Text);
        }

        return new ClientIdentity("", userName)
        {
            State = new BrokerUserSession(userName, _acl?.Compile(userName, clientId) ?? TopicAccess.All),
            // Its sessions are its own: an anonymous client or another user presenting the same client id neither
            // resumes nor takes them over.
            SessionOwner = "user/" + userName,
        };
    }

    /// <summary>An anonymous client's identity: under an ACL file it has the file's anonymous rights only.</summary>
    public ClientIdentity Anonymous(string clientId) =>
        _acl is null ? ClientIdentity.Anonymous : new ClientIdentity("") { State = new BrokerUserSession(null, _acl.Compile(null, clientId)) };
}
