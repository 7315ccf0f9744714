using System.Diagnostics;
using Taihu.Platform.Tests;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>
/// A long-running Mosquitto program (<c>mosquitto_sub -d</c>, or the <c>mosquitto</c> broker) whose output lines
/// the test waits on: "received SUBACK" is the sign that a subscriber is ready, a broker's "running" that it listens.
/// </summary>
public sealed class MosquittoProcess : IAsyncDisposable
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);
    private readonly Process _process;
    private readonly List<string> _lines = [];
    private readonly List<(Func<string, bool> Match, TaskCompletionSource<string> Done)> _waiters = [];

    private MosquittoProcess(string program, IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(program) { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        _process = new Process { StartInfo = start };
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.Start();
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    /// <summary>The program's process id (to sample its CPU and memory from /proc).</summary>
    public int Pid => _process.Id;

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

    /// <summary><c>mosquitto_sub -d</c> with the arguments; returns once its subscription is acknowledged.</summary>
    public static async Task<MosquittoProcess> SubscribeAsync(params string[] arguments)
    {
        // stdbuf: mosquitto_sub buffers its output when it is not a terminal, and the test waits on its lines.
        var process = new MosquittoProcess("/usr/bin/stdbuf", ["-oL", "/usr/bin/mosquitto_sub", "-d", .. arguments]);
        await process.WaitForLineAsync(line => line.Contains("received SUBACK", StringComparison.Ordinal));
        return process;
    }

    /// <summary>
    /// A Mosquitto broker on 127.0.0.1 (a free port, or <paramref name="port"/> to come back on), anonymous clients
    /// allowed; with <paramref name="directory"/>, persistent in it (sessions and queued messages survive a
    /// <see cref="StopAsync"/>). Returns once it runs.
    /// </summary>
    public static async Task<(MosquittoProcess Broker, int Port, string Directory)> StartBrokerAsync(int port = 0, string? directory = null)
    {
        if (port == 0)
        {
            port = LoopbackPort.Free();
        }

        var persistent = directory is not null;
        directory ??= Path.Combine(Path.GetTempPath(), "taihu-mosquitto-" + Guid.NewGuid().ToString("N"));
        System.IO.Directory.CreateDirectory(directory);
        if (persistent && !OperatingSystem.IsWindows())
        {
            // Started as root, Mosquitto drops to its own user, which must be able to write its database here.
            File.SetUnixFileMode(directory, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead
                | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute | UnixFileMode.OtherRead | UnixFileMode.OtherWrite | UnixFileMode.OtherExecute);
        }

        var config = Path.Combine(directory, "mosquitto.conf");
        var persistence = persistent ? $"persistence true\npersistence_location {directory}/\n" : "persistence false\n";
        await File.WriteAllTextAsync(config, $"listener {port} 127.0.0.1\nallow_anonymous true\n{persistence}log_dest stderr\nlog_type all\n");
        var broker = new MosquittoProcess("/usr/sbin/mosquitto", ["-c", config]);
        await broker.WaitForLineAsync(line => line.Contains(" running", StringComparison.Ordinal));
        return (broker, port, directory);
    }

    public Task<string> WaitForLineAsync(Func<string, bool> match)
    {
        var done = new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_lines)
        {
            foreach (var line in _lines)
            {
                if (match(line))
                {
                    return Task.FromResult(line);
                }
            }

            _waiters.Add((match, done));
        }

        return WaitAsync(done.Task);

        async Task<string> WaitAsync(Task<string> task)
        {
            try
            {
                return await task.WaitAsync(Guard);
            }
            catch (TimeoutException)
            {
                throw new TimeoutException($"{_process.StartInfo.FileName} did not print the line awaited within {Guard.TotalSeconds} s. Output:\n{Output}");
            }
        }
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_lines)
        {
            _lines.Add(line);
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Match(line))
                {
                    _waiters[i].Done.TrySetResult(line);
                    _waiters.RemoveAt(i);
                }
            }
        }
    }

    /// <summary>Stops it with SIGTERM, as a service manager does (a broker then saves its persistence file).</summary>
    public async Task StopAsync()
    {
        if (!_process.HasExited)
        {
            using var kill = Process.Start(new ProcessStartInfo("/bin/kill", ["-TERM", _process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]) { UseShellExecute = false })!;
            await kill.WaitForExitAsync();
        }

        await _process.WaitForExitAsync().WaitAsync(Guard);
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
        }

        await _process.WaitForExitAsync();
        _process.Dispose();
    }
}
