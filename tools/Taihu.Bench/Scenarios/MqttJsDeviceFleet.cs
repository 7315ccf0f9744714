using System.Diagnostics;
using System.Globalization;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// The RPC fleet on the npm mqtt client (<c>--client mqttjs</c>): <c>bench/thirdparty/node/rpc_fleet.mjs</c> in a
/// Node.js process of its own, each device subscribed to its RPC requests at QoS 1 and answering at once with
/// <c>{"seq":N}</c>, as <see cref="MqttNetDeviceFleet"/>'s do. A third client whose timing (and collector) is
/// neither ours nor .NET's. Needs <c>node</c> and <c>npm</c>; the package is installed from its lock file on first use.
/// </summary>
public sealed class MqttJsDeviceFleet : IAsyncDisposable
{
    private readonly Process _node;
    private readonly TaskCompletionSource _ready = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private long _commands;
    private string? _failure;

    private MqttJsDeviceFleet(Process node) => _node = node;

    /// <summary>Commands the devices received, as the fleet last said (it says so every second).</summary>
    public long Commands => Interlocked.Read(ref _commands);

    /// <summary>Where the fleet's script is: under the repository root, found upwards from here or from the binaries.</summary>
    public static string ScriptDirectory()
    {
        foreach (var start in (string[])[Directory.GetCurrentDirectory(), AppContext.BaseDirectory])
        {
            for (var dir = new DirectoryInfo(start); dir is not null; dir = dir.Parent)
            {
                var candidate = Path.Combine(dir.FullName, "bench", "thirdparty", "node");
                if (File.Exists(Path.Combine(candidate, "rpc_fleet.mjs")))
                {
                    return candidate;
                }
            }
        }

        throw new InvalidOperationException("bench/thirdparty/node/rpc_fleet.mjs was not found above the current directory or taihu-bench's.");
    }

    public static async Task<MqttJsDeviceFleet> StartAsync(BenchOptions o, string runId, string[] tokens, IProgress<ProgressReport>? progress, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(o);
        ArgumentNullException.ThrowIfNull(tokens);
        var directory = ScriptDirectory();
        if (!File.Exists(Path.Combine(directory, "node_modules", "mqtt", "package.json")))
        {
            progress?.Report(new ProgressReport("installing the npm mqtt package", TimeSpan.Zero, TimeSpan.FromSeconds(1), 0, 0, 0));
            await RunAsync("npm", directory, cancellationToken, "ci", "--no-audit", "--no-fund");
        }

        var start = new ProcessStartInfo("node")
        {
            WorkingDirectory = directory,
            RedirectStandardInput = true,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in (string[])["rpc_fleet.mjs", o.Target.Host, o.Target.Port.ToString(CultureInfo.InvariantCulture), o.Target.Version == Taihu.Mqtt.ProtocolVersion.V500 ? "5" : "4"])
        {
            start.ArgumentList.Add(argument);
        }

        var fleet = new MqttJsDeviceFleet(Process.Start(start) ?? throw new InvalidOperationException("node did not start."));
        fleet._node.OutputDataReceived += (_, e) => fleet.OnLine(e.Data);
        fleet._node.ErrorDataReceived += (_, e) => fleet.OnError(e.Data);
        fleet._node.BeginOutputReadLine();
        fleet._node.BeginErrorReadLine();
        try
        {
            var input = fleet._node.StandardInput;
            await input.WriteLineAsync(runId);
            foreach (var token in tokens)
            {
                await input.WriteLineAsync(token);
            }

            await input.WriteLineAsync();
            await input.FlushAsync(cancellationToken);
            await fleet._ready.Task.WaitAsync(TimeSpan.FromMinutes(5), cancellationToken);
            return fleet;
        }
        catch
        {
            await fleet.DisposeAsync();
            throw;
        }
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            _ready.TrySetException(new InvalidOperationException("The MQTT.js fleet ended before its devices were ready: " + (_failure ?? "no reason given")));
            return;
        }

        if (line.StartsWith("ready ", StringComparison.Ordinal))
        {
            _ready.TrySetResult();
        }
        else if (line.StartsWith("commands ", StringComparison.Ordinal) && long.TryParse(line.AsSpan(9), CultureInfo.InvariantCulture, out var n))
        {
            Interlocked.Exchange(ref _commands, n);
        }
        else if (line.StartsWith("failed ", StringComparison.Ordinal))
        {
            _failure = line[7..];
            _ready.TrySetException(new InvalidOperationException("The MQTT.js fleet failed: " + _failure));
        }
    }

    private void OnError(string? line)
    {
        if (!string.IsNullOrWhiteSpace(line))
        {
            _failure ??= line;
        }
    }

    private static async Task RunAsync(string program, string directory, CancellationToken cancellationToken, params string[] arguments)
    {
        var start = new ProcessStartInfo(program) { WorkingDirectory = directory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"{program} did not start.");
        var output = process.StandardOutput.ReadToEndAsync(cancellationToken);
        var errors = process.StandardError.ReadToEndAsync(cancellationToken);
        await process.WaitForExitAsync(cancellationToken);
        if (process.ExitCode != 0)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', arguments)} in {directory} failed ({process.ExitCode}): {await output}{await errors}");
        }
    }

    /// <summary>Closes the fleet's stdin (it ends its connections and exits), or kills it after 10 s.</summary>
    public async ValueTask DisposeAsync()
    {
        try
        {
            _node.StandardInput.Close();
            await _node.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(10));
        }
        catch (Exception e) when (e is TimeoutException or IOException or InvalidOperationException)
        {
            _node.Kill(entireProcessTree: true);
        }

        _node.Dispose();
    }
}
