using System.Globalization;
using System.Text.RegularExpressions;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>
/// One server for a CoAP test class, with a tenant administrator, a small payload limit (so that block-wise uploads
/// can pass it) and short retransmission timers (so that an unacknowledged notification ends its observation within
/// a test).
/// </summary>
public sealed class CoapFixture : IAsyncLifetime
{
    /// <summary>Ingest:MaxPayloadBytes in these tests.</summary>
    public const int MaxPayloadBytes = 4096;

    private ServerProcess? _server;

    public ServerProcess Server => _server ?? throw new InvalidOperationException("The server has not started.");

    public PlatformApi SysAdmin { get; private set; } = null!;

    public PlatformApi Admin { get; private set; } = null!;

    public string Url(string path) => $"coap://127.0.0.1:{Server.CoapPort}{path}";

    public async Task InitializeAsync()
    {
        _server = await ServerProcess.StartAsync(new Dictionary<string, string>
        {
            ["Ingest__MaxPayloadBytes"] = MaxPayloadBytes.ToString(CultureInfo.InvariantCulture),
            ["Coap__AckTimeout"] = "00:00:00.200",
            ["Coap__MaxRetransmit"] = "2",
        });
        SysAdmin = await PlatformApi.SysAdminAsync(_server);
        (_, Admin) = await SysAdmin.CreateTenantWithAdminAsync("Tenant " + Guid.NewGuid().ToString("N")[..8]);
    }

    /// <summary><c>taihu_protocol_rejected_total{protocol="coap",reason=...}</c>, 0 when absent.</summary>
    public async Task<double> RejectedAsync(string reason)
    {
        var text = await Admin.Http.GetStringAsync("/metrics");
        var match = Regex.Match(text, "^taihu_protocol_rejected_total\\{[^}]*protocol=\"coap\"[^}]*reason=\"" + reason + "\"[^}]*\\} ([0-9.e+]+)", RegexOptions.Multiline);
        return match.Success ? double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture) : 0;
    }

    /// <summary>
    /// Reads the counter until it reaches <paramref name="expected"/> (the exporter caches a scrape briefly, so a
    /// count just made may show on a later read; each read is a round trip, bounded by the guard).
    /// </summary>
    public async Task ExpectRejectedAsync(string reason, double expected)
    {
        var deadline = DateTime.UtcNow + ServerProcess.Guard;
        double value;
        while ((value = await RejectedAsync(reason)) < expected)
        {
            Assert.True(DateTime.UtcNow < deadline, $"taihu_protocol_rejected_total{{protocol=\"coap\",reason=\"{reason}\"}} is {value}, not {expected}.");
        }
    }

    public async Task DisposeAsync()
    {
        SysAdmin?.Dispose();
        Admin?.Dispose();
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}
