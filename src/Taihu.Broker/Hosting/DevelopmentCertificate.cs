using System.Net;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;

namespace Taihu.Broker.Hosting;

/// <summary>
/// The TLS certificate: the configured one, or a self-signed development certificate for localhost and
/// 127.0.0.1 that is created once and kept as PEM in <see cref="ListenerOptions.DevelopmentCertificateDirectory"/>, so that clients can trust it with
/// <c>mosquitto_pub --cafile data/taihu-dev-cert.pem</c>.
/// </summary>
public static class DevelopmentCertificate
{
    public const string CertificateFileName = "taihu-dev-cert.pem";
    public const string KeyFileName = "taihu-dev-key.pem";

    public static X509Certificate2 Load(ListenerOptions options, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(timeProvider);
        if (!string.IsNullOrEmpty(options.CertificatePath))
        {
            return LoadConfigured(options);
        }

        var directory = Directory(options);
        System.IO.Directory.CreateDirectory(directory);
        var certPath = Path.Combine(directory, CertificateFileName);
        var keyPath = Path.Combine(directory, KeyFileName);
        if (File.Exists(certPath) && File.Exists(keyPath))
        {
            var existing = X509Certificate2.CreateFromPemFile(certPath, keyPath);
            if (existing.NotAfter > timeProvider.GetLocalNow().DateTime.AddDays(1))
            {
                return existing;
            }

            existing.Dispose();
        }

        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=Taihu development certificate", key, HashAlgorithmName.SHA256);
        var san = new SubjectAlternativeNameBuilder();
        san.AddDnsName("localhost");
        san.AddIpAddress(IPAddress.Loopback);
        san.AddIpAddress(IPAddress.IPv6Loopback);
        request.CertificateExtensions.Add(san.Build());
        // A self-signed certificate that clients use as their own trust anchor (--cafile): mark it as a CA so
        // that OpenSSL accepts it in that role, and for server authentication.
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(certificateAuthority: true, hasPathLengthConstraint: true, pathLengthConstraint: 0, critical: true));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature | X509KeyUsageFlags.KeyCertSign, critical: true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], critical: false));
        request.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(request.PublicKey, critical: false));
        var now = timeProvider.GetUtcNow();
        using var created = request.CreateSelfSigned(now.AddMinutes(-5), now.AddYears(2));
        File.WriteAllText(certPath, created.ExportCertificatePem());
        File.WriteAllText(keyPath, key.ExportPkcs8PrivateKeyPem());
        if (!OperatingSystem.IsWindows())
        {
            File.SetUnixFileMode(keyPath, UnixFileMode.UserRead | UnixFileMode.UserWrite);
        }

        return X509Certificate2.CreateFromPemFile(certPath, keyPath);
    }

    /// <summary>The folder the development certificate is kept in.</summary>
    public static string Directory(ListenerOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        return string.IsNullOrEmpty(options.DevelopmentCertificateDirectory) ? ListenerOptions.DefaultDevelopmentCertificateDirectory : options.DevelopmentCertificateDirectory;
    }

    private static X509Certificate2 LoadConfigured(ListenerOptions options)
    {
        var path = options.CertificatePath!;
        if (path.EndsWith(".pfx", StringComparison.OrdinalIgnoreCase) || path.EndsWith(".p12", StringComparison.OrdinalIgnoreCase))
        {
            return X509CertificateLoader.LoadPkcs12FromFile(path, options.CertificatePassword);
        }

        return string.IsNullOrEmpty(options.CertificatePassword)
            ? X509Certificate2.CreateFromPemFile(path, options.CertificateKeyPath)
            : X509Certificate2.CreateFromEncryptedPemFile(path, options.CertificatePassword, options.CertificateKeyPath);
    }
}
