using System.CommandLine;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Hosting;
using Microsoft.Extensions.Logging;

namespace Taihu.Bench.Scenarios;

/// <summary>
/// A bare Kestrel listener that accepts connections and reads until they close, with nothing of MQTT: the floor
/// under any broker on Kestrel. Point `idle --pid` at it to learn what a connection costs Kestrel alone.
/// </summary>
public static class KestrelBaseline
{
    public static Command Create()
    {
        var port = new Option<int>("--port", "-p") { Description = "Port to listen on (loopback).", DefaultValueFactory = _ => 1886 };
        var command = new Command("kestrel-baseline", "Run a bare Kestrel listener that only accepts and reads (the memory floor for 'idle'). Stops on Ctrl-C.");
        command.Options.Add(port);
        command.SetAction(async (parse, cancellationToken) =>
        {
            var builder = WebApplication.CreateSlimBuilder();
            builder.Logging.ClearProviders();
            builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, parse.GetValue(port), l => l.UseConnectionHandler<DrainHandler>()));
            await using var app = builder.Build();
            Console.WriteLine($"Kestrel baseline listening on 127.0.0.1:{parse.GetValue(port)} (pid {Environment.ProcessId})");
            await app.StartAsync(cancellationToken);
            try
            {
                await Task.Delay(Timeout.Infinite, cancellationToken);
            }
            catch (OperationCanceledException)
            {
            }

            await app.StopAsync(CancellationToken.None);
            return 0;
        });
        return command;
    }

    private sealed class DrainHandler : ConnectionHandler
    {
        public override async Task OnConnectedAsync(ConnectionContext connection)
        {
            var input = connection.Transport.Input;
            while (true)
            {
                var result = await input.ReadAsync();
                input.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted || result.IsCanceled)
                {
                    return;
                }
            }
        }
    }
}
