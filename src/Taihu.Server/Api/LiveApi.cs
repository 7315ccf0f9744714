namespace Taihu.Server.Api;

/// <summary>
/// ThingsBoard's live WebSocket API on the HTTP port: <c>/api/ws</c> (the first frame authenticates with
/// <c>authCmd</c>) and the older <c>/api/ws/plugins/telemetry?token=JWT</c>. See <see cref="LiveSocket"/>.
/// </summary>
public static class LiveApi
{
    public static IEndpointRouteBuilder MapLiveApi(this IEndpointRouteBuilder app)
    {
        app.Map("/api/ws", (HttpContext context, LiveServices services, IHostApplicationLifetime lifetime) =>
                AcceptAsync(context, services, lifetime, tokenInQuery: false))
            .WithName("LiveWebSocket")
            .WithSummary("Live telemetry and attributes over WebSocket; the first frame carries authCmd with the JWT.")
            .ExcludeFromDescription();
        app.Map("/api/ws/plugins/telemetry", (HttpContext context, LiveServices services, IHostApplicationLifetime lifetime) =>
                AcceptAsync(context, services, lifetime, tokenInQuery: true))
            .WithName("LiveWebSocketTelemetryPlugin")
            .WithSummary("Live telemetry and attributes over WebSocket, ThingsBoard's older path: ?token=<JWT>, tsSubCmds, attrSubCmds, historyCmds.")
            .ExcludeFromDescription();
        return app;
    }

    private static async Task AcceptAsync(HttpContext context, LiveServices services, IHostApplicationLifetime lifetime, bool tokenInQuery)
    {
        if (!context.WebSockets.IsWebSocketRequest)
        {
            await ApiErrors.Problem(400, 30, "This path takes WebSocket connections only (ThingsBoard's live API).").ExecuteAsync(context);
            return;
        }

        // The token of the older path is read before the upgrade, and checked after it, so that a bad one is
        // answered in the API's own terms (errorCode 3) rather than as a failed handshake.
        var token = tokenInQuery ? context.Request.Query["token"].ToString() : null;
        using var ws = await context.WebSockets.AcceptWebSocketAsync();
        await LiveSocket.RunAsync(ws, services, tokenInQuery, token, lifetime.ApplicationStopping);
    }
}
