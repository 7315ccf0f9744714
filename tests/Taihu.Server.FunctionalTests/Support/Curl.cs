using System.Diagnostics;

namespace Taihu.Server.FunctionalTests.Support;

/// <summary>Runs curl, as ThingsBoard's documentation does, and returns the HTTP status and the body.</summary>
public static class Curl
{
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(30);

    public static async Task<(int Status, string Body)> RunAsync(params string[] arguments)
    {
        var start = new ProcessStartInfo("curl") { UseShellExecute = false, RedirectStandardOutput = true, RedirectStandardError = true };
        // -s quiet, then the body, then a last line with the status code.
        foreach (var argument in new[] { "-s", "-w", "\n%{http_code}" }.Concat(arguments))
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start) ?? throw new InvalidOperationException("Could not start curl.");
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(Guard);
        var output = await stdout;
        Assert.True(process.ExitCode == 0, $"curl failed ({process.ExitCode}): {await stderr}");
        var split = output.LastIndexOf('\n');
        return (int.Parse(output[(split + 1)..], System.Globalization.CultureInfo.InvariantCulture), output[..split]);
    }
}
