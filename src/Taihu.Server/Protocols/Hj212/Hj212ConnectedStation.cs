using System.Security.Cryptography;
using System.Text;
using Taihu.Platform.Devices;
using Taihu.Protocols.Hj212;

namespace Taihu.Server.Protocols.Hj212;

/// <summary>A station one connection speaks for: its device, its settings, the fields its commands carry, and its session.</summary>
internal sealed class Hj212ConnectedStation(string mn, Device device, Hj212CrcKind crc, TimeSpan utcOffset, string st)
{
    private byte[] _password = [];

    public string Mn { get; } = mn;

    public Device Device { get; } = device;

    public Hj212CrcKind Crc { get; } = crc;

    public TimeSpan UtcOffset { get; } = utcOffset;

    /// <summary>The system code of its last frame, which the platform's commands to it carry.</summary>
    public string St { get; set; } = st;

    /// <summary>Flag's edition bits of its last frame (1 for HJ 212-2017, 0 for 2005).</summary>
    public int Edition { get; set; } = 1;

    public string Password { get; private set; } = "";

    public ProtocolDeviceSession? Session { get; set; }

    /// <summary>Completed once <see cref="Session"/> is open: answers to commands that fail before it wait for it.</summary>
    public TaskCompletionSource<ProtocolDeviceSession> Ready { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public void SetPassword(string pw)
    {
        Password = pw;
        _password = Encoding.UTF8.GetBytes(pw);
    }

    public bool PasswordIs(string pw)
    {
        Span<byte> bytes = stackalloc byte[Encoding.UTF8.GetMaxByteCount(pw.Length)];
        var length = Encoding.UTF8.GetBytes(pw, bytes);
        return CryptographicOperations.FixedTimeEquals(bytes[..length], _password);
    }
}
