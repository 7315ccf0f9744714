using System.Globalization;
using System.Security.Cryptography;
using System.Text;

namespace Taihu.Platform.BrokerUsers;

/// <summary>A broker user file (password or ACL file) that cannot be used, with the line at fault.</summary>
public sealed class BrokerUserFileException(string path, int line, string problem)
    : Exception(line > 0 ? $"{path} line {line}: {problem}" : $"{path}: {problem}")
{
    public string Path { get; } = path;

    /// <summary>1-based; 0 when the problem is the file as a whole (missing, too large).</summary>
    public int Line { get; } = line;
}

/// <summary>
/// One user's password as <c>mosquitto_passwd</c> writes it. Mosquitto 2.0 writes
/// <c>$7$iterations$salt$hash</c>: PBKDF2-HMAC-SHA512 over the password with the salt, 64 bytes (default 101
/// iterations, 12-byte salt). Mosquitto 1.x wrote <c>$6$salt$hash</c>: SHA-512 of the password followed by the salt.
/// Salt and hash are standard base64.
/// </summary>
public sealed class MosquittoPasswordHash
{
    /// <summary>Most PBKDF2 iterations accepted: a check at 10^6 already takes about a second here.</summary>
    public const int MaximumIterations = 1_000_000;

    private const int HashBytes = 64;
    private const int MaximumSaltBytes = 1024;

    private readonly byte[] _salt;
    private readonly byte[] _hash;

    private MosquittoPasswordHash(int iterations, byte[] salt, byte[] hash, string text)
    {
        Iterations = iterations;
        _salt = salt;
        _hash = hash;
        Text = text;
    }

    /// <summary>PBKDF2 iterations for <c>$7$</c>; 0 for the salted SHA-512 of <c>$6$</c>.</summary>
    public int Iterations { get; }

    /// <summary>The hash as written in the file (the key of the verified-password cache).</summary>
    public string Text { get; }

    /// <summary>Reads <c>$7$...</c> or <c>$6$...</c>; false with the reason when it is neither.</summary>
    public static bool TryParse(string text, out MosquittoPasswordHash? hash, out string problem)
    {
        hash = null;
        var parts = text.Split('$');
        // "$7$101$salt$hash" splits into "", "7", "101", "salt", "hash"; "$6$salt$hash" into "", "6", "salt", "hash".
        if (parts.Length == 5 && parts[0].Length == 0 && parts[1] == "7")
        {
            if (!int.TryParse(parts[2], NumberStyles.None, CultureInfo.InvariantCulture, out var iterations) || iterations is < 1 or > MaximumIterations)
            {
                problem = $"the iteration count of a $7$ hash must be a number from 1 to {MaximumIterations}.";
                return false;
            }

            return TryDecode(parts[3], parts[4], iterations, text, out hash, out problem);
        }

        if (parts.Length == 4 && parts[0].Length == 0 && parts[1] == "6")
        {
            return TryDecode(parts[2], parts[3], 0, text, out hash, out problem);
        }

        problem = "the password is not a $7$ (PBKDF2-SHA512) or $6$ (SHA-512) hash as mosquitto_passwd writes it; plain-text passwords are not accepted.";
        return false;
    }

    private static bool TryDecode(string salt64, string hash64, int iterations, string text, out MosquittoPasswordHash? hash, out string problem)
    {
        hash = null;
        var salt = Decode(salt64);
        if (salt is null || salt.Length is 0 or > MaximumSaltBytes)
        {
            problem = "the salt is not base64 of 1 to 1024 bytes.";
            return false;
        }

        var digest = Decode(hash64);
        if (digest is null || digest.Length != HashBytes)
        {
            problem = "the hash is not base64 of 64 bytes (SHA-512).";
            return false;
        }

        hash = new MosquittoPasswordHash(iterations, salt, digest, text);
        problem = "";
        return true;
    }

    private static byte[]? Decode(string base64)
    {
        var buffer = new byte[(base64.Length * 3 / 4) + 3];
        return Convert.TryFromBase64String(base64, buffer, out var written) ? buffer.AsSpan(0, written).ToArray() : null;
    }

    /// <summary>Whether <paramref name="password"/> is this one; the comparison takes the same time wherever they differ.</summary>
    public bool Verify(ReadOnlySpan<byte> password)
    {
        Span<byte> actual = stackalloc byte[HashBytes];
        if (Iterations > 0)
        {
            Rfc2898DeriveBytes.Pbkdf2(password, _salt, actual, Iterations, HashAlgorithmName.SHA512);
        }
        else
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA512);
            sha.AppendData(password);
            sha.AppendData(_salt);
            sha.GetHashAndReset(actual);
        }

        return CryptographicOperations.FixedTimeEquals(actual, _hash);
    }
}

/// <summary>
/// Reads a Mosquitto password file: one <c>user:hash</c> a line; blank lines and lines starting with <c>#</c> are
/// skipped. Anything else stops the server at start with the file and line, rather than leaving a user unable to
/// log in without saying why.
/// </summary>
public static class MosquittoPasswordFile
{
    /// <summary>A password file of thousands of users is a few hundred KiB; a larger one is not a password file.</summary>
    public const long MaximumFileBytes = 16 * 1024 * 1024;

    public static IReadOnlyDictionary<string, MosquittoPasswordHash> Load(string path) => Parse(path, ReadAll(path));

    /// <summary>The lines of a Mosquitto file that say something (trimmed; blank lines and # comments skipped), numbered from 1.</summary>
    internal static IEnumerable<(int Number, string Line)> ContentLines(string text)
    {
        var number = 0;
        foreach (var raw in text.Split('\n'))
        {
            number++;
            var line = raw.TrimEnd('\r').Trim(' ', '\t');
            if (line.Length > 0 && line[0] != '#')
            {
                yield return (number, line);
            }
        }
    }

    public static IReadOnlyDictionary<string, MosquittoPasswordHash> Parse(string path, string text)
    {
        var users = new Dictionary<string, MosquittoPasswordHash>(StringComparer.Ordinal);
        foreach (var (number, line) in ContentLines(text))
        {

            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                throw new BrokerUserFileException(path, number, "expected user:hash.");
            }

            var user = line[..colon];
            if (HasControlCharacters(user))
            {
                throw new BrokerUserFileException(path, number, "the user name has control characters.");
            }

            if (!MosquittoPasswordHash.TryParse(line[(colon + 1)..], out var hash, out var problem))
            {
                throw new BrokerUserFileException(path, number, problem);
            }

            if (!users.TryAdd(user, hash!))
            {
                throw new BrokerUserFileException(path, number, "the user is already listed above.");
            }
        }

        return users;
    }

    internal static bool HasControlCharacters(string text)
    {
        foreach (var c in text)
        {
            if (char.IsControl(c))
            {
                return true;
            }
        }

        return false;
    }

    internal static string ReadAll(string path)
    {
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                throw new BrokerUserFileException(path, 0, "the file does not exist.");
            }

            if (info.Length > MaximumFileBytes)
            {
                throw new BrokerUserFileException(path, 0, $"the file is larger than {MaximumFileBytes} bytes.");
            }

            return File.ReadAllText(path, new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true));
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or DecoderFallbackException)
        {
            throw new BrokerUserFileException(path, 0, $"cannot be read as UTF-8 text ({e.Message}).");
        }
    }
}
