namespace Taihu.Broker.Hosting;

/// <summary>
/// Where the broker listens (configuration section "Listeners"). A port of -1 turns that listener off; 0 asks the
/// OS for a free port (tests). Defaults are the ports Mosquitto and EMQX users expect.
/// </summary>
public sealed class ListenerOptions
{
    /// <summary>Address every listener binds to. "0.0.0.0" is all IPv4 interfaces; "127.0.0.1" keeps it to this machine.</summary>
    public string BindAddress { get; set; } = "0.0.0.0";

    /// <summary>MQTT over TCP. 1883 is the IANA port for MQTT.</summary>
    public int TcpPort { get; set; } = 1883;

    /// <summary>MQTT over TLS. 8883 is the IANA port for MQTT over TLS.</summary>
    public int TlsPort { get; set; } = 8883;

    /// <summary>MQTT over WebSocket, path <see cref="WebSocketPath"/>. 8083 as EMQX.</summary>
    public int WebSocketPort { get; set; } = 8083;

    /// <summary>MQTT over secure WebSocket. 8084 as EMQX.</summary>
    public int SecureWebSocketPort { get; set; } = 8084;

    /// <summary>The WebSocket path; "/mqtt" is what MQTT.js and browser clients default to.</summary>
    public string WebSocketPath { get; set; } = "/mqtt";

    /// <summary>
    /// The largest TCP segment the plain MQTT listener sends, in bytes (0: the system's). 4096 keeps a client with a
    /// small receive buffer acknowledging promptly on loopback and other large-MTU links (see
    /// <c>MqttTcpListener.CreateListenSocket</c>); on Ethernet the segment is 1,460 bytes anyway.
    /// </summary>
    public int TcpMaximumSegmentSize { get; set; } = 4096;

    /// <summary>PEM or PFX certificate for the TLS listeners. When empty a self-signed development certificate is created in <see cref="DevelopmentCertificateDirectory"/>.</summary>
    public string? CertificatePath { get; set; }

    /// <summary>PEM private key for <see cref="CertificatePath"/> (when it is a PEM file without its key).</summary>
    public string? CertificateKeyPath { get; set; }

    /// <summary>Password of a PFX certificate or an encrypted key. Never logged.</summary>
    public string? CertificatePassword { get; set; }

    /// <summary>
    /// Where the self-signed development certificate and its key are created and kept (when
    /// <see cref="CertificatePath"/> is empty). The host points it at its own data directory unless it is set;
    /// a broker hosted without it uses <see cref="DefaultDevelopmentCertificateDirectory"/>.
    /// </summary>
    public string? DevelopmentCertificateDirectory { get; set; }

    /// <summary>"data" under the working directory, where the broker kept it before it had a host.</summary>
    public const string DefaultDevelopmentCertificateDirectory = "data";

    /// <summary>The address the listeners bind to, as <see cref="BindAddress"/> names it (valid options only).</summary>
    public System.Net.IPAddress ResolveBindAddress() =>
        BindAddress == "localhost" ? System.Net.IPAddress.Loopback : System.Net.IPAddress.Parse(BindAddress);

    public IEnumerable<string> Validate()
    {
        foreach (var (name, port) in new[] { ("TcpPort", TcpPort), ("TlsPort", TlsPort), ("WebSocketPort", WebSocketPort), ("SecureWebSocketPort", SecureWebSocketPort) })
        {
            if (port is < -1 or > 65_535)
            {
                yield return $"Listeners:{name} must be -1 (off), 0 (any free port) or a port number up to 65535.";
            }
        }

        if (!System.Net.IPAddress.TryParse(BindAddress, out _) && BindAddress != "localhost")
        {
            yield return "Listeners:BindAddress must be an IP address or 'localhost'.";
        }

        if (TcpMaximumSegmentSize != 0 && TcpMaximumSegmentSize is < 536 or > 32_767)
        {
            yield return "Listeners:TcpMaximumSegmentSize must be 0 (the system's) or from 536 to 32767 bytes.";
        }

        if (!WebSocketPath.StartsWith('/'))
        {
            yield return "Listeners:WebSocketPath must start with '/'.";
        }
    }
}
