using Microsoft.AspNetCore.Connections;

namespace Taihu.Broker.Transport;

/// <summary>
/// The connections a TCP listener has accepted and not yet released: each is added when accepted and released (its
/// transport disposed) by whoever runs it when it ends, so that a stop can wait until all have ended, and abort those
/// left when it cannot wait longer. Used by the MQTT listener and the platform's HJ 212 and JT/T 808 listeners.
/// </summary>
public sealed class OpenConnections
{
    private readonly HashSet<ConnectionContext> _connections = [];
    private TaskCompletionSource? _drained;

    /// <summary>A connection was accepted.</summary>
    public void Add(ConnectionContext connection)
    {
        lock (_connections)
        {
            _connections.Add(connection);
        }
    }

    /// <summary>A connection has ended: disposes its transport and forgets it.</summary>
    public async ValueTask ReleaseAsync(ConnectionContext connection)
    {
        try
        {
            await connection.DisposeAsync();
        }
        catch (Exception ex) when (ex is not OutOfMemoryException)
        {
            // The socket failed as it closed; it is gone either way.
        }

        TaskCompletionSource? drained = null;
        lock (_connections)
        {
            _connections.Remove(connection);
            if (_connections.Count == 0)
            {
                drained = _drained;
            }
        }

        drained?.TrySetResult();
    }

    /// <summary>Completes when every connection has been released (at once when none is open).</summary>
    public Task DrainedAsync()
    {
        lock (_connections)
        {
            return _connections.Count == 0 ? Task.CompletedTask : (_drained ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
        }
    }

    /// <summary>Aborts every open connection (the server is shutting down and cannot wait).</summary>
    public void AbortAll()
    {
        ConnectionContext[] open;
        lock (_connections)
        {
            open = [.. _connections];
        }

        foreach (var connection in open)
        {
            connection.Abort(new ConnectionAbortedException("The server is shutting down."));
        }
    }
}
