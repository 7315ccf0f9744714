using System.Net;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;
using Taihu.Broker.Hosting;

namespace Taihu.Server;

/// <summary>
/// The host's own settings: its HTTP port and its data directory. They are read from the "Listeners" section
/// (<c>Listeners:HttpPort</c>, <c>Listeners:DataDirectory</c>), where they were when the broker owned them, so that
/// existing configuration keeps working; the broker's listeners share that section and its bind address.
/// </summary>
public sealed class ServerOptions
{
    /// <summary>The configuration section these settings are read from.</summary>
    public const string SectionName = "Listeners";

    /// <summary>HTTP for /healthz, /metrics and the API. -1 turns it off; 0 asks the OS for a free port (tests).</summary>
    public int HttpPort { get; set; } = 8080;

    /// <summary>
    /// Where Taihu keeps its files: the SQLite database, the JWT signing key and, unless
    /// <c>Listeners:DevelopmentCertificateDirectory</c> says otherwise, the development certificate.
    /// Relative to the working directory.
    /// </summary>
    public string DataDirectory { get; set; } = "data";

    /// <summary>HJ 212 stations (TCP). -1 turns it off; 0 asks the OS for a free port (tests).</summary>
    public int Hj212Port { get; set; } = 9212;

    /// <summary>JT/T 808 vehicle terminals (TCP). -1 turns it off; 0 asks the OS for a free port (tests).</summary>
    public int Jt808Port { get; set; } = 6808;

    /// <summary>CoAP devices (UDP), ThingsBoard's CoAP device API. -1 turns it off; 0 asks the OS for a free port (tests).</summary>
    public int CoapPort { get; set; } = 5683;

    /// <summary>The problems with these settings, each naming its setting; empty when they are valid.</summary>
    public IEnumerable<string> Validate()
    {
        foreach (var (name, port) in new[] { (nameof(HttpPort), HttpPort), (nameof(Hj212Port), Hj212Port), (nameof(Jt808Port), Jt808Port), (nameof(CoapPort), CoapPort) })
        {
            if (port is < -1 or > 65_535)
            {
                yield return $"{SectionName}:{name} must be -1 (off), 0 (any free port) or a port number up to 65535.";
            }
        }
    }
}

/// <summary>Checks <see cref="ServerOptions"/> when they are first built (at start, with ValidateOnStart).</summary>
internal sealed class ServerOptionsValidator : IValidateOptions<ServerOptions>
{
    public ValidateOptionsResult Validate(string? name, ServerOptions options) => OptionsProblems.Result(options.Validate());
}

/// <summary>The port the host's HTTP listener actually bound (useful when configured as 0).</summary>
public sealed class ServerEndpoints
{
    internal ListenOptions? Http { get; set; }

    public int HttpPort => (Http?.EndPoint as IPEndPoint)?.Port ?? -1;

    /// <summary>The port the HJ 212 listener bound, -1 when it is off (set by the listener as it binds).</summary>
    public int Hj212Port { get; internal set; } = -1;

    /// <summary>The port the JT/T 808 listener bound, -1 when it is off.</summary>
    public int Jt808Port { get; internal set; } = -1;

    /// <summary>The UDP port the CoAP listener bound, -1 when it is off.</summary>
    public int CoapPort { get; internal set; } = -1;
}

/// <summary>Settings that stop the server from starting; <see cref="Problems"/> names each setting and what is wrong.</summary>
public sealed class InvalidSettingsException : Exception
{
    public InvalidSettingsException(IReadOnlyList<string> problems)
        : base(string.Join(" ", problems)) => Problems = problems;

    public InvalidSettingsException()
        : this([])
    {
    }

    public InvalidSettingsException(string message)
        : base(message) => Problems = [message];

    public InvalidSettingsException(string message, Exception innerException)
        : base(message, innerException) => Problems = [message];

    public IReadOnlyList<string> Problems { get; }
}
