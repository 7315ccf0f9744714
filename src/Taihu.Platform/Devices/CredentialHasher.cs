using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Taihu.Platform.Devices;

/// <summary>
/// Hashing for device secrets, which must be checked in microseconds (a 10,000-device reconnect storm must not
/// cost minutes of CPU, as PBKDF2 at 100k iterations would at ~70 ms a check):
/// <list type="bullet">
/// <item>access tokens and API keys are long random strings, so one SHA-256 is enough to look them up without
/// storing what a lookup compares;</item>
/// <item>device passwords may be weak, so they get a salt and PBKDF2-SHA256 at 1,000 iterations (about 0.7 ms
/// here), and the authenticator keeps a bounded cache of verified ones.</item>
/// </list>
/// People's passwords use ASP.NET Core's PasswordHasher (PBKDF2 at 100k iterations) instead.
/// </summary>
public static class CredentialHasher
{
    private const int Iterations = 1_000;
    private const int SaltBytes = 16;
    private const int HashBytes = 32;

    /// <summary>Lower-case hex SHA-256 of the UTF-8 text.</summary>
    public static string Sha256(string text) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text)));

    /// <summary>Lower-case hex SHA-256 of the bytes.</summary>
    public static string Sha256(ReadOnlySpan<byte> bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

    /// <summary>A salted hash of a device password: <c>pbkdf2-sha256$iterations$salt$hash</c>.</summary>
    public static string HashPassword(string password)
    {
        var salt = RandomNumberGenerator.GetBytes(SaltBytes);
        var hash = Rfc2898DeriveBytes.Pbkdf2(Encoding.UTF8.GetBytes(password), salt, Iterations, HashAlgorithmName.SHA256, HashBytes);
        return string.Create(CultureInfo.InvariantCulture, $"pbkdf2-sha256${Iterations}${Convert.ToBase64String(salt)}${Convert.ToBase64String(hash)}");
    }

    /// <summary>Whether <paramref name="password"/> matches <paramref name="stored"/>, compared in constant time.</summary>
    public static bool VerifyPassword(ReadOnlySpan<byte> password, string stored)
    {
        var parts = stored.Split('$');
        if (parts.Length != 4 || parts[0] != "pbkdf2-sha256" || !int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var iterations))
        {
            return false;
        }

        var salt = Convert.FromBase64String(parts[2]);
        var expected = Convert.FromBase64String(parts[3]);
        var actual = Rfc2898DeriveBytes.Pbkdf2(password, salt, iterations, HashAlgorithmName.SHA256, expected.Length);
        return CryptographicOperations.FixedTimeEquals(actual, expected);
    }

    /// <summary>A new random access token: 20 characters of [a-zA-Z0-9], as ThingsBoard generates them (~119 bits).</summary>
    public static string NewAccessToken() => RandomNumberGenerator.GetString("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 20);
}
