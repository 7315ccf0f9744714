using Taihu.Bench.Client;
using Taihu.Mqtt;

namespace Taihu.Bench.Scenarios;

/// <summary>Everything a run is told on the command line.</summary>
public sealed class BenchOptions
{
    public string Host { get; set; } = "127.0.0.1";
    public int Port { get; set; } = 1883;
    public bool Tls { get; set; }
    public string? CaFile { get; set; }
    public string? WebSocketPath { get; set; }
    public string Protocol { get; set; } = "5";
    public string? UserName { get; set; }
    public string? Password { get; set; }
    /// <summary>Total publish rate over all publishers, msg/s; 0 = as fast as possible.</summary>
    public double Rate { get; set; }
    public int PayloadSize { get; set; } = 100;
    public int QoS { get; set; }
    public double DurationSeconds { get; set; } = 10;
    public double WarmupSeconds { get; set; } = 2;
    public double DrainSeconds { get; set; } = 5;
    public int Publishers { get; set; } = 50;
    public int Subscribers { get; set; } = 1;
    public int Clients { get; set; } = 100;
    public int MaxInflight { get; set; } = 100;
    public int? BrokerPid { get; set; }
    /// <summary>Prometheus endpoint of the broker (Taihu's /metrics) to read its GC allocations from.</summary>
    public string? MetricsUrl { get; set; }
    public string? JsonPath { get; set; }
    public string TopicPrefix { get; set; } = "bench";
    public string[] SourceAddresses { get; set; } = [];
    public bool Quiet { get; set; }
    /// <summary>idle: open TCP connections without MQTT (for the kestrel-baseline listener).</summary>
    public bool SocketsOnly { get; set; }
    /// <summary>idle: keep alive in CONNECT, seconds; each client pings once per period (0: none).</summary>
    public int KeepAliveSeconds { get; set; } = 60;
    /// <summary>idle: how often the generator sends the pings due, milliseconds (50: in bursts; 1: each about when due).</summary>
    public int PingTickMilliseconds { get; set; } = 50;
    /// <summary>Which client implementation the message-flow scenarios use.</summary>
    public ClientKind Client { get; set; }

    public ProtocolVersion Version => Protocol switch
    {
        "3.1.1" or "311" or "4" => ProtocolVersion.V311,
        "5" or "5.0" or "500" => ProtocolVersion.V500,
        _ => throw new ArgumentException($"Unknown protocol '{Protocol}'; use 3.1.1 or 5."),
    };

    public BrokerTarget Target => new(Host, Port, Version, Tls, CaFile, WebSocketPath, UserName, Password);

    /// <summary>The other nodes of a cluster under test (message-flow scenarios); empty for one broker.</summary>
    public IReadOnlyList<ClusterNode> OtherNodes { get; set; } = [];

    /// <summary>The node a connection goes to: 0 is <see cref="Port"/>, then <see cref="OtherNodes"/> in turn.</summary>
    public BrokerTarget TargetAt(int index)
    {
        var node = index % (OtherNodes.Count + 1);
        return node == 0 ? Target : Target with { Port = OtherNodes[node - 1].Port };
    }
}

/// <summary>Another node of a cluster under test: where clients reach it and its process, for its CPU.</summary>
public readonly record struct ClusterNode(int Port, int Pid)
{
    public static IReadOnlyList<ClusterNode> ParseList(string? text)
    {
        var nodes = new List<ClusterNode>();
        foreach (var item in (text ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = item.Split(':');
            if (parts.Length != 2 || !int.TryParse(parts[0], out var port) || !int.TryParse(parts[1], out var pid))
            {
                throw new ArgumentException($"--other-nodes takes port:pid pairs separated by commas (e.g. 1886:4242,1887:4243), not '{item}'.");
            }

            nodes.Add(new ClusterNode(port, pid));
        }

        return nodes;
    }
}
