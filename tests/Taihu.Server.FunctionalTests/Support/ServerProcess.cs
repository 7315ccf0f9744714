using System.Diagnostics;
using System.Reflection;
using System.Text;
using System.Text.RegularExpressions;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>
/// The real Taihu.Server executable in its own process, every listener on 127.0.0.1 with an OS-assigned port and a
/// fresh temporary data directory, so that test classes can run in parallel. The bound ports are read from the
/// start-up banner on stdout; every wait is on a line of output or on the process exit, with a wall-clock guard
/// that only turns a hang into a failure.
/// </summary>
public sealed partial class ServerProcess : IAsyncDisposable
{
    /// <summary>Failure guard for start-up and exit; a healthy server starts in well under a second.</summary>
    public static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Failure guard for a cluster node's start-up: it joins the membership and opens its first PostgreSQL
    /// connections while the other nodes, and other test assemblies, load the 2-core machine. In CI a node has
    /// once been seen not started after 30 s, its PostgreSQL connection attempt timed out after Npgsql's 15.
    /// </summary>
    public static readonly TimeSpan ClusterNodeStartGuard = TimeSpan.FromSeconds(90);

    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Found)> _waiters = [];
    private readonly Task _exited;
    private readonly bool _ownsDataDirectory;
    private bool _hasExited;

    private ServerProcess(Process process, string dataDirectory, bool ownsDataDirectory)
    {
        _process = process;
        DataDirectory = dataDirectory;
        _ownsDataDirectory = ownsDataDirectory;
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        _exited = WatchExitAsync();
    }

    public string DataDirectory { get; }

    /// <summary>The system administrator (sysadmin@taihu.local)'s password in tests.</summary>
    public const string AdminPassword = "functional-tests-admin";

    /// <summary>The self-signed development certificate the server writes for its TLS listeners.</summary>
    public string CertificatePath => Path.Combine(DataDirectory, "taihu-dev-cert.pem");

    public int ProcessId => _process.Id;
    public int TcpPort { get; private set; } = -1;
    public int TlsPort { get; private set; } = -1;
    public int WebSocketPort { get; private set; } = -1;
    public int SecureWebSocketPort { get; private set; } = -1;
    public int HttpPort { get; private set; } = -1;

    /// <summary>The HJ 212, JT/T 808 and CoAP (UDP) listeners' ports; -1 when off.</summary>
    public int Hj212Port { get; private set; } = -1;

    public int Jt808Port { get; private set; } = -1;

    public int CoapPort { get; private set; } = -1;
    public string WebSocketPath { get; private set; } = "";

    /// <summary>The start-up banner line, as logged.</summary>
    public string Banner { get; private set; } = "";

    public Uri HttpBaseAddress => new($"http://127.0.0.1:{HttpPort}");

    /// <summary>Everything the process wrote so far, stdout and stderr interleaved by arrival.</summary>
    public string Output
    {
        get
        {
            lock (_lines)
            {
                return string.Join('\n', _lines);
            }
        }
    }

    /// <summary>Starts the server with every listener on port 0 and waits for its banner.</summary>
    /// <param name="environment">Extra environment variables (configuration such as <c>Broker__MaximumPacketSize</c>); they override the defaults set here.</param>
    /// <param name="dataDirectory">An existing data directory to start on (a restart); it is then left in place on dispose.</param>
    public static async Task<ServerProcess> StartAsync(IReadOnlyDictionary<string, string>? environment = null, string? dataDirectory = null)
    {
        var server = Launch(environment, dataDirectory);
        try
        {
            var guard = environment is not null && environment.TryGetValue("Cluster__Enabled", out var cluster) && cluster == "true" ? ClusterNodeStartGuard : Guard;
            var banner = await server.WaitForLineAsync(line => line.Contains("Taihu listening on", StringComparison.Ordinal), guard);
            server.ReadBanner(banner);
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    /// <summary>Starts the server and waits for it to exit by itself (start-up failures); returns the exit code.</summary>
    public static async Task<(int ExitCode, string Output)> RunToExitAsync(IReadOnlyDictionary<string, string>? environment = null)
    {
        await using var server = Launch(environment, null);
        var exitCode = await server.WaitForExitAsync();
        return (exitCode, server.Output);
    }

    /// <summary>Waits for a line of output matching <paramref name="match"/> (lines already written count).</summary>
    public Task<string> WaitForLineAsync(Func<string, bool> match) => WaitForLineAsync(match, Guard);

    /// <summary>As the other overload, failing after <paramref name="guard"/> instead of <see cref="Guard"/>.</summary>
    public Task<string> WaitForLineAsync(Func<string, bool> match, TimeSpan guard)
    {
        var found = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lines)
        {
            foreach (var line in _lines)
            {
                if (match(line))
                {
                    return Task.FromResult(line);
                }
            }

            if (_hasExited)
            {
                return Task.FromException<string>(new InvalidOperationException($"The server exited without the expected output. Output:\n{string.Join('\n', _lines)}"));
            }

            _waiters.Add((match, found));
        }

        return GuardAsync(found.Task, "the expected line of output", guard);
    }

    /// <summary>Sends a POSIX signal (e.g. "INT", "TERM") to the server, as Ctrl-C or a service manager would.</summary>
    public async Task SignalAsync(string signal)
    {
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { $"-{signal}", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture) }, UseShellExecute = false })
            ?? throw new InvalidOperationException("Could not run kill.");
        await kill.WaitForExitAsync().WaitAsync(Guard);
        Assert.Equal(0, kill.ExitCode);
    }

    /// <summary>Waits for the process to exit and for its output to be read to the end; returns the exit code.</summary>
    public async Task<int> WaitForExitAsync()
    {
        await GuardAsync(_exited, "the server to exit");
        return _process.ExitCode;
    }

    /// <summary>Kills the process at once (SIGKILL: no shutdown code runs, as in a crash) and waits for it to be gone.</summary>
    public async Task KillAsync()
    {
        _process.Kill(entireProcessTree: true);
        await GuardAsync(_exited, "the killed server to exit");
    }

    public async ValueTask DisposeAsync()
    {
        if (!_exited.IsCompleted)
        {
            try
            {
                _process.Kill(entireProcessTree: true);
            }
            catch (InvalidOperationException)
            {
                // It exited between the check and the kill.
            }

            await _exited.WaitAsync(Guard);
        }

        _process.Dispose();
        if (_ownsDataDirectory)
        {
            DeleteDataDirectory(DataDirectory);
        }
    }

    /// <summary>Creates a data directory for <see cref="StartAsync"/> that outlives one server process.</summary>
    public static string NewDataDirectory()
    {
        var dataDirectory = Path.Combine(Path.GetTempPath(), "taihu-functional-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(dataDirectory);
        return dataDirectory;
    }

    public static void DeleteDataDirectory(string dataDirectory)
    {
        try
        {
            Directory.Delete(dataDirectory, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }

    private static ServerProcess Launch(IReadOnlyDictionary<string, string>? environment, string? existingDataDirectory)
    {
        var serverDll = FindServerAssembly();
        var dataDirectory = existingDataDirectory ?? NewDataDirectory();
        // A runner started from a non-interactive shell in the background inherits SIGINT as ignored, and so would
        // the server (the runtime leaves an ignored SIGINT alone): reset it, so SIGINT acts as Ctrl-C does.
        var resetSigint = OperatingSystem.IsLinux() && File.Exists("/usr/bin/env");
        var start = resetSigint
            ? new ProcessStartInfo("/usr/bin/env") { ArgumentList = { "--default-signal=INT", DotnetHost(), serverDll } }
            : new ProcessStartInfo(DotnetHost()) { ArgumentList = { serverDll } };
        start.WorkingDirectory = Path.GetDirectoryName(serverDll)!;
        start.UseShellExecute = false;
        start.RedirectStandardOutput = true;
        start.RedirectStandardError = true;
        start.RedirectStandardInput = true;
        start.StandardOutputEncoding = Encoding.UTF8;
        start.StandardErrorEncoding = Encoding.UTF8;

        // Settings the test runner may have set for itself must not leak into the server.
        foreach (var inherited in new[] { "ASPNETCORE_URLS", "ASPNETCORE_HTTP_PORTS", "ASPNETCORE_HTTPS_PORTS", "DOTNET_URLS", "ASPNETCORE_ENVIRONMENT", "DOTNET_ENVIRONMENT" })
        {
            start.Environment.Remove(inherited);
        }

        start.Environment["Listeners__BindAddress"] = "127.0.0.1";
        start.Environment["Listeners__TcpPort"] = "0";
        start.Environment["Listeners__TlsPort"] = "0";
        start.Environment["Listeners__WebSocketPort"] = "0";
        start.Environment["Listeners__SecureWebSocketPort"] = "0";
        start.Environment["Listeners__HttpPort"] = "0";
        start.Environment["Listeners__Hj212Port"] = "0";
        start.Environment["Listeners__Jt808Port"] = "0";
        start.Environment["Listeners__CoapPort"] = "0";
        start.Environment["Listeners__DataDirectory"] = dataDirectory;
        start.Environment["Logging__Console__DisableColors"] = "true";
        // The broker tests connect without credentials, as to a general broker; device tests use tokens.
        start.Environment["Security__AllowAnonymousMqtt"] = "true";
        start.Environment["Security__AdminPassword"] = AdminPassword;
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            start.Environment[name] = value;
        }

        var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {serverDll}.");
        return new ServerProcess(process, dataDirectory, ownsDataDirectory: existingDataDirectory is null);
    }

    /// <summary>
    /// Taihu.Server.dll as the project reference copied it next to this assembly (with its runtimeconfig, deps and
    /// appsettings.json); failing that, the server project's own build output for this configuration.
    /// </summary>
    private static string FindServerAssembly()
    {
        var besideTests = Path.Combine(AppContext.BaseDirectory, "Taihu.Server.dll");
        if (File.Exists(besideTests) && File.Exists(Path.Combine(AppContext.BaseDirectory, "Taihu.Server.runtimeconfig.json")))
        {
            return besideTests;
        }

        var configuration = typeof(ServerProcess).Assembly.GetCustomAttribute<AssemblyConfigurationAttribute>()?.Configuration ?? "Debug";
        for (var directory = new DirectoryInfo(AppContext.BaseDirectory); directory is not null; directory = directory.Parent)
        {
            var candidate = Path.Combine(directory.FullName, "src", "Taihu.Server", "bin", configuration, "net10.0", "Taihu.Server.dll");
            if (File.Exists(candidate))
            {
                return candidate;
            }
        }

        throw new FileNotFoundException($"Taihu.Server.dll is neither in {AppContext.BaseDirectory} nor in src/Taihu.Server/bin/{configuration}/net10.0; build the solution first.");
    }

    /// <summary>The dotnet host running these tests (the SDK sets DOTNET_HOST_PATH), else the one on PATH.</summary>
    private static string DotnetHost()
    {
        var hostPath = Environment.GetEnvironmentVariable("DOTNET_HOST_PATH");
        if (!string.IsNullOrEmpty(hostPath) && File.Exists(hostPath))
        {
            return hostPath;
        }

        var self = Environment.ProcessPath;
        if (self is not null && Path.GetFileNameWithoutExtension(self) == "dotnet")
        {
            return self;
        }

        return "dotnet";
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        List<TaskCompletionSource<string>>? matched = null;
        lock (_lines)
        {
            _lines.Add(line);
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Match(line))
                {
                    (matched ??= []).Add(_waiters[i].Found);
                    _waiters.RemoveAt(i);
                }
            }
        }

        matched?.ForEach(found => found.TrySetResult(line));
    }

    private async Task WatchExitAsync()
    {
        // Completes once the process has exited and both redirected streams are read to their end.
        await _process.WaitForExitAsync();
        List<TaskCompletionSource<string>> pending;
        string output;
        lock (_lines)
        {
            _hasExited = true;
            pending = [.. _waiters.Select(w => w.Found)];
            _waiters.Clear();
            output = string.Join('\n', _lines);
        }

        foreach (var found in pending)
        {
            found.TrySetException(new InvalidOperationException($"The server exited with code {_process.ExitCode} without the expected output. Output:\n{output}"));
        }
    }

    private async Task<T> GuardAsync<T>(Task<T> task, string what, TimeSpan guard)
    {
        try
        {
            return await task.WaitAsync(guard);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"Timed out after {guard.TotalSeconds} s waiting for {what}. Output so far:\n{Output}\n{MachineState.Describe()}");
        }
    }

    private async Task GuardAsync(Task task, string what)
    {
        try
        {
            await task.WaitAsync(Guard);
        }
        catch (TimeoutException)
        {
            throw new TimeoutException($"Timed out after {Guard.TotalSeconds} s waiting for {what}. Output so far:\n{Output}\n{MachineState.Describe()}");
        }
    }

    private void ReadBanner(string line)
    {
        var match = BannerPattern().Match(line);
        Assert.True(match.Success, $"Unexpected banner: {line}");
        Banner = line;
        TcpPort = Port("tcp");
        TlsPort = Port("tls");
        WebSocketPort = Port("ws");
        WebSocketPath = match.Groups["path"].Value;
        SecureWebSocketPort = Port("wss");
        HttpPort = Port("http");
        Hj212Port = Port("hj212");
        Jt808Port = Port("jt808");
        CoapPort = Port("coap");

        int Port(string group) => int.Parse(match.Groups[group].ValueSpan, System.Globalization.CultureInfo.InvariantCulture);
    }

    [GeneratedRegex(@"Taihu listening on (?<address>\S+): MQTT tcp (?<tcp>-?\d+), tls (?<tls>-?\d+), ws (?<ws>-?\d+) \((?<path>[^)]*)\), wss (?<wss>-?\d+); HTTP (?<http>-?\d+) \(/healthz, /metrics\); HJ 212 (?<hj212>-?\d+), JT/T 808 (?<jt808>-?\d+), CoAP udp (?<coap>-?\d+)")]
    private static partial Regex BannerPattern();
}
