using System.Diagnostics;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>Runs the Mosquitto command-line clients (/usr/bin/mosquitto_pub, mosquitto_sub) to completion.</summary>
public static class MosquittoClient
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(20);

    public static Task<(int ExitCode, string Output)> PublishAsync(params string[] arguments) => RunAsync("/usr/bin/mosquitto_pub", arguments);

    public static Task<(int ExitCode, string Output)> SubscribeAsync(params string[] arguments) => RunAsync("/usr/bin/mosquitto_sub", arguments);

    private static async Task<(int ExitCode, string Output)> RunAsync(string program, string[] arguments)
    {
        var start = new ProcessStartInfo(program)
        {
            UseShellExecute = false,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException($"Could not start {program}.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        try
        {
            await process.WaitForExitAsync().WaitAsync(Guard);
        }
        catch (TimeoutException)
        {
            process.Kill();
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish in {Guard.TotalSeconds} s.");
        }

        return (process.ExitCode, (await stdout) + (await stderr));
    }
}
