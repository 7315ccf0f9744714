using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using MQTTnet;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>X.509 device credentials: the device is recognised by the certificate it presents on the TLS listener.</summary>
public sealed class X509DeviceTests(PlatformFixture fixture) : IClassFixture<PlatformFixture>
{
    [Fact]
    public async Task DeviceWithACertificate_ConnectsOverTls_AndAStrangersCertificateIsRefused()
    {
        using var deviceCertificate = CreateCertificate("CN=meter-x509");
        using var strangerCertificate = CreateCertificate("CN=stranger");
        var (id, _) = await fixture.Admin.CreateDeviceAsync("x509-" + Guid.NewGuid().ToString("N")[..8]);
        var credentials = await fixture.Admin.PostAsync("/api/device/credentials", new
        {
            deviceId = new { id, entityType = "DEVICE" },
            credentialsType = "X509_CERTIFICATE",
            credentialsValue = deviceCertificate.ExportCertificatePem(),
        });
        Assert.Equal(Convert.ToHexStringLower(deviceCertificate.GetCertHash(HashAlgorithmName.SHA256)), credentials["credentialsId"]!.GetValue<string>());

        using (var client = new MqttClientFactory().CreateMqttClient())
        {
            var result = await client.ConnectAsync(Options(deviceCertificate)).WaitAsync(TimeSpan.FromSeconds(15));
            Assert.Equal(MqttClientConnectResultCode.Success, result.ResultCode);
            var published = await client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("v1/devices/me/telemetry").WithPayload("{\"tls\":true}")
                .WithQualityOfServiceLevel(MQTTnet.Protocol.MqttQualityOfServiceLevel.AtLeastOnce).Build());
            Assert.True(published.IsSuccess);
            await client.DisconnectAsync();
        }

        Assert.True((await fixture.Admin.LatestAsync(id))["tls"].Value!.GetValue<bool>());

        using var stranger = new MqttClientFactory().CreateMqttClient();
        var refused = await stranger.ConnectAsync(Options(strangerCertificate)).WaitAsync(TimeSpan.FromSeconds(15));
        Assert.Equal(MqttClientConnectResultCode.BadUserNameOrPassword, refused.ResultCode);
    }

    private MqttClientOptions Options(X509Certificate2 certificate) => new MqttClientOptionsBuilder()
        .WithTcpServer("localhost", fixture.Server.TlsPort)
        .WithClientId("x509-" + Guid.NewGuid().ToString("N")[..8])
        .WithTlsOptions(tls => tls
            .UseTls()
            .WithClientCertificates([certificate])
            // The server's development certificate is self-signed; trust exactly it.
            .WithCertificateValidationHandler(context => context.Certificate is not null
                && context.Certificate.GetCertHashString() == X509Certificate2.CreateFromPem(File.ReadAllText(fixture.Server.CertificatePath)).GetCertHashString()))
        .WithTimeout(TimeSpan.FromSeconds(15))
        .Build();

    private static X509Certificate2 CreateCertificate(string subject)
    {
        using var key = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest(subject, key, HashAlgorithmName.SHA256);
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.2")], critical: false));
        using var certificate = request.CreateSelfSigned(DateTimeOffset.UtcNow.AddDays(-1), DateTimeOffset.UtcNow.AddDays(30));
        // A certificate with its private key in a form SslStream can present on Linux.
        return X509CertificateLoader.LoadPkcs12(certificate.Export(X509ContentType.Pkcs12), null);
    }
}
