using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Npgsql;

namespace Taihu.Platform.Tests;

/// <summary>
/// One PostgreSQL server for the whole test assembly. With <c>TAIHU_TEST_POSTGRES</c> set (a connection string
/// whose role may create databases), that server is used. Otherwise a private cluster is created in a temporary
/// directory with the installed <c>initdb</c>, started on a free loopback port with trust authentication, and
/// stopped and deleted at the end. When neither works the fixture throws: PostgreSQL tests never skip.
/// </summary>
/// <remarks>
/// PostgreSQL refuses to run as root, so as root the binaries run as the <c>postgres</c> OS user through
/// <c>runuser</c> and the directory is handed to that user. Durability is switched off (fsync, full page writes,
/// synchronous commit): the cluster lives for one test run.
/// </remarks>
public sealed class PostgresServer : IAsyncLifetime
{
    public const string EnvironmentVariable = "TAIHU_TEST_POSTGRES";

    private static readonly TimeSpan s_commandTimeout = TimeSpan.FromSeconds(120);

    private string? _directory;
    private string? _binDirectory;
    private bool _asPostgresUser;

    /// <summary>A connection string for the maintenance database, with rights to create and drop databases.</summary>
    public string AdminConnectionString { get; private set; } = "";

    /// <summary>Where the server came from, for messages.</summary>
    public string Description { get; private set; } = "";

    public async Task InitializeAsync()
    {
        if (Environment.GetEnvironmentVariable(EnvironmentVariable) is { Length: > 0 } configured)
        {
            AdminConnectionString = configured;
            Description = $"the server in {EnvironmentVariable}";
            await CheckConnectionAsync($"{EnvironmentVariable} is set, but its server does not answer");
            return;
        }

        _binDirectory = FindBinDirectory() ?? throw new InvalidOperationException(
            "PostgreSQL tests need a PostgreSQL server and none was found. Either set " + EnvironmentVariable +
            " to a connection string whose role may create databases (e.g. Host=127.0.0.1;Port=5432;Username=taihu;Password=...;Database=postgres)," +
            " or install PostgreSQL (apt-get install -y postgresql) so that initdb and pg_ctl exist under /usr/lib/postgresql/<version>/bin.");
        _asPostgresUser = Environment.IsPrivilegedProcess;
        _directory = Directory.CreateTempSubdirectory("taihu-pg-").FullName;
        var data = Path.Combine(_directory, "data");
        if (_asPostgresUser)
        {
            await RunAsync("chown", ["postgres:postgres", _directory]);
        }

        // Databases in production sort and case-fold text by a language's rules, not by code point: from PostgreSQL
        // 15 on, the cluster gets ICU's en-US, so that tests which lean on the C collation fail here first.
        var version = await PostgresToolVersionAsync("initdb");
        string[] locale = version >= 15 ? ["--locale=C.UTF-8", "--locale-provider=icu", "--icu-locale=en-US"] : ["--locale=C.UTF-8"];
        await RunPostgresToolAsync("initdb", ["-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8", .. locale, "--no-sync"]);

        // A free port: bind port 0, read it back, let go. Another process could take it in between; then pg_ctl
        // fails and we try the next one.
        Exception? last = null;
        for (var attempt = 0; attempt < 3; attempt++)
        {
            var port = LoopbackPort.Free();
            var options = string.Join(' ',
                "-c listen_addresses=127.0.0.1", $"-c port={port.ToString(CultureInfo.InvariantCulture)}", $"-c unix_socket_directories={_directory}",
                "-c fsync=off", "-c full_page_writes=off", "-c synchronous_commit=off", "-c max_connections=200",
                // For a failure's message (RecentLog): lock waits over deadlock_timeout (1 s) and statements over 5 s.
                "-c log_lock_waits=on", "-c log_min_duration_statement=5000");
            try
            {
                // -w: pg_ctl returns once the server accepts connections (or fails when it does not within -t).
                await RunPostgresToolAsync("pg_ctl", ["-D", data, "-l", Path.Combine(_directory, "server.log"), "-o", options, "-w", "-t", "60", "start"]);
                AdminConnectionString = new NpgsqlConnectionStringBuilder
                {
                    Host = "127.0.0.1",
                    Port = port,
                    Username = "postgres",
                    Database = "postgres",
                    Pooling = false,
                    // Npgsql gives up on a TCP connection attempt after 15 s by default. CI has twice seen a
                    // cluster node's attempt on loopback time out while the machine was loaded; a SYN left
                    // unanswered is sent again after 1, 3, 7, 15 and 31 s, so 60 s rides over four of those.
                    Timeout = 60,
                }.ConnectionString;
                Description = $"a private PostgreSQL ({_binDirectory}) on 127.0.0.1:{port}";
                await CheckConnectionAsync("The private PostgreSQL server started but does not accept connections");
                return;
            }
            catch (InvalidOperationException e)
            {
                last = e;
            }
        }

        throw new InvalidOperationException($"Could not start a private PostgreSQL server in {_directory}: {last?.Message}\n{ServerLog()}", last);
    }

    public async Task DisposeAsync()
    {
        if (_directory is null)
        {
            return;
        }

        try
        {
            var data = Path.Combine(_directory, "data");
            if (File.Exists(Path.Combine(data, "postmaster.pid")))
            {
                await RunPostgresToolAsync("pg_ctl", ["-D", data, "-m", "fast", "-w", "stop"]);
            }
        }
        finally
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    /// <summary>Creates an empty database with a random name; returns its name.</summary>
    public async Task<string> CreateDatabaseAsync()
    {
        var name = "taihu_test_" + Guid.NewGuid().ToString("N");
        await using var connection = new NpgsqlConnection(AdminConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"CREATE DATABASE \"{name}\" ENCODING 'UTF8' TEMPLATE template0", connection);
        await command.ExecuteNonQueryAsync();
        return name;
    }

    /// <summary>A connection string for <paramref name="database"/> on this server.</summary>
    public string ConnectionString(string database) =>
        new NpgsqlConnectionStringBuilder(AdminConnectionString) { Database = database, Pooling = true }.ConnectionString;

    /// <summary>Drops the database, closing whatever connections are still open to it.</summary>
    public async Task DropDatabaseAsync(string name)
    {
        await using var connection = new NpgsqlConnection(AdminConnectionString);
        await connection.OpenAsync();
        await using var command = new NpgsqlCommand($"DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)", connection);
        await command.ExecuteNonQueryAsync();
    }

    private async Task CheckConnectionAsync(string failure)
    {
        try
        {
            await using var connection = new NpgsqlConnection(AdminConnectionString);
            await connection.OpenAsync();
            await using var command = new NpgsqlCommand("SELECT 1", connection);
            await command.ExecuteScalarAsync();
        }
        catch (Exception e) when (e is NpgsqlException or SocketException or TimeoutException)
        {
            throw new InvalidOperationException($"{failure}: {e.Message}\n{ServerLog()}", e);
        }
    }

    private static string? FindBinDirectory()
    {
        const string root = "/usr/lib/postgresql";
        if (Directory.Exists(root))
        {
            // The newest installed major version.
            var versions = Directory.GetDirectories(root)
                .Select(d => (Dir: d, Version: int.TryParse(Path.GetFileName(d), NumberStyles.None, CultureInfo.InvariantCulture, out var v) ? v : -1))
                .OrderByDescending(x => x.Version);
            foreach (var (dir, _) in versions)
            {
                var bin = Path.Combine(dir, "bin");
                if (File.Exists(Path.Combine(bin, "initdb")) && File.Exists(Path.Combine(bin, "pg_ctl")))
                {
                    return bin;
                }
            }
        }

        // Other layouts (a developer's machine): initdb on the PATH.
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries))
        {
            if (File.Exists(Path.Combine(dir, "initdb")) && File.Exists(Path.Combine(dir, "pg_ctl")))
            {
                return dir;
            }
        }

        return null;
    }

    /// <summary>The last <paramref name="lines"/> lines of the private server's log (empty for a configured server), for a failure's message.</summary>
    public string RecentLog(int lines = 40)
    {
        var log = _directory is null ? null : Path.Combine(_directory, "server.log");
        if (log is null || !File.Exists(log))
        {
            return "";
        }

        var all = File.ReadAllLines(log);
        return $"The last lines of PostgreSQL's log ({Description}):\n" + string.Join('\n', all[Math.Max(0, all.Length - lines)..]);
    }

    private string ServerLog()
    {
        var log = _directory is null ? null : Path.Combine(_directory, "server.log");
        return log is not null && File.Exists(log) ? "server.log:\n" + File.ReadAllText(log) : "";
    }

    /// <summary>The major version of an installed tool, from <c>initdb (PostgreSQL) 15.14</c>.</summary>
    private async Task<int> PostgresToolVersionAsync(string tool)
    {
        var output = await RunAsync(Path.Combine(_binDirectory!, tool), ["--version"]);
        var number = output.Trim().Split(' ').Last();
        return int.TryParse(number.Split('.')[0], NumberStyles.None, CultureInfo.InvariantCulture, out var major)
            ? major
            : throw new InvalidOperationException($"Cannot read the version of {tool} from '{output.Trim()}'.");
    }

    private Task<string> RunPostgresToolAsync(string tool, IReadOnlyList<string> arguments)
    {
        var path = Path.Combine(_binDirectory!, tool);
        return _asPostgresUser
            ? RunAsync("runuser", ["-u", "postgres", "--", path, .. arguments])
            : RunAsync(path, arguments);
    }

    /// <summary>Runs a program to its end; returns what it wrote to standard output, or throws with all it wrote.</summary>
    private static async Task<string> RunAsync(string fileName, IReadOnlyList<string> arguments)
    {
        var start = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
            // initdb and the server must not inherit the test host's working directory, which postgres cannot read.
            WorkingDirectory = Path.GetTempPath(),
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        var commandLine = fileName + " " + string.Join(' ', arguments);
        using var process = new Process { StartInfo = start };
        try
        {
            process.Start();
        }
        catch (System.ComponentModel.Win32Exception e)
        {
            throw new InvalidOperationException($"Could not run {commandLine}: {e.Message}", e);
        }

        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        using var timeout = new CancellationTokenSource(s_commandTimeout);
        try
        {
            await process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            throw new InvalidOperationException($"{commandLine} did not finish within {s_commandTimeout.TotalSeconds} s.");
        }

        if (process.ExitCode != 0)
        {
            var text = new StringBuilder().Append(await output).Append(await error).ToString();
            throw new InvalidOperationException($"{commandLine} failed with exit code {process.ExitCode}:\n{text}");
        }

        return await output;
    }
}

/// <summary>Every test class that needs PostgreSQL joins this collection and so shares one server.</summary>
[CollectionDefinition(Name)]
public sealed class PostgresCollection : ICollectionFixture<PostgresServer>
{
    public const string Name = "PostgreSQL";
}
