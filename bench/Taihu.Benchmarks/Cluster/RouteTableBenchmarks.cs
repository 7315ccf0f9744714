using BenchmarkDotNet.Attributes;
using Taihu.Cluster.Mqtt;

namespace Taihu.Benchmarks.Cluster;

/// <summary>
/// The cluster's replicated route table (<see cref="RouteTable{TNode}"/>) at a city's shape: every device holds two
/// routes, its RPC requests (<c>$devices/{id}/rpc/request/+</c>) and its attribute updates
/// (<c>$devices/{id}/attributes</c>), in its tenant's namespace (100 tenants), and every node keeps every other node's
/// routes. Measured: building the table for <see cref="Devices"/> devices (allocated bytes per route; the bytes the
/// built table keeps are printed by the setup, "retained per route"), a device reconnecting (its two routes removed
/// and added again: the churn a reconnect storm makes), and matching a command to one device against the whole
/// table. Nodes are numbers here; the cluster's are silo addresses (a reference each, as an int's slot is here).
/// </summary>
[MemoryDiagnoser]
public class RouteTableBenchmarks
{
    private const int Tenants = 100;
    private const int ChurnDevices = 1_000;
    private readonly List<int> _nodes = new(4);
    private string[] _namespaces = [];
    private string[] _rpcFilters = [];
    private string[] _attributeFilters = [];
    private RouteTable<int> _table = null!;
    private string _commandTopic = "";
    private string _commandNamespace = "";

    [Params(100_000)]
    public int Devices { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _namespaces = new string[Tenants];
        for (var t = 0; t < Tenants; t++)
        {
            _namespaces[t] = Guid.NewGuid().ToString("N");
        }

        _rpcFilters = new string[Devices];
        _attributeFilters = new string[Devices];
        for (var d = 0; d < Devices; d++)
        {
            var prefix = "$devices/" + Guid.NewGuid().ToString("N") + "/";
            _rpcFilters[d] = prefix + "rpc/request/+";
            _attributeFilters[d] = prefix + "attributes";
        }

        // The filters' own strings are the subscriptions' (they exist without the table): measured apart from it.
        var before = GC.GetTotalMemory(forceFullCollection: true);
        _table = Build();
        var after = GC.GetTotalMemory(forceFullCollection: true);
        Console.WriteLine($"// RouteTable: {_table.Count:N0} routes of {Devices:N0} devices, retained per route {(after - before) / (double)_table.Count:N0} bytes");
        _commandNamespace = _namespaces[(Devices / 2) % Tenants];
        _commandTopic = _rpcFilters[Devices / 2][..^1] + "42";
    }

    [GlobalCleanup]
    public void Cleanup() => _table.Dispose();

    /// <summary>Every device's two routes into an empty table, spread over three nodes.</summary>
    [Benchmark]
    public int BuildTable()
    {
        using var table = Build();
        return table.Count;
    }

    /// <summary>A device reconnects: its two routes go and come back (per device; 1,000 devices in a row).</summary>
    [Benchmark(OperationsPerInvoke = ChurnDevices)]
    public void Reconnect()
    {
        for (var d = 0; d < ChurnDevices; d++)
        {
            var ns = _namespaces[d % Tenants];
            var node = d % 3;
            _table.Remove(node, ns, _rpcFilters[d]);
            _table.Remove(node, ns, _attributeFilters[d]);
            _table.Add(node, ns, _rpcFilters[d]);
            _table.Add(node, ns, _attributeFilters[d]);
        }
    }

    /// <summary>A command published to one device, matched against the whole table for the node(s) to send it to.</summary>
    [Benchmark]
    public int MatchCommand()
    {
        _nodes.Clear();
        _table.Match(_commandNamespace, _commandTopic, _nodes);
        return _nodes.Count;
    }

    private RouteTable<int> Build()
    {
        var table = new RouteTable<int>();
        for (var d = 0; d < Devices; d++)
        {
            var ns = _namespaces[d % Tenants];
            table.Add(d % 3, ns, _rpcFilters[d]);
            table.Add(d % 3, ns, _attributeFilters[d]);
        }

        return table;
    }
}
