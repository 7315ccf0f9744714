using System.Text.Json;
using Microsoft.AspNetCore.Diagnostics;
using Taihu.Platform;

namespace Taihu.Server.Api;

/// <summary>
/// Every API error as problem details (RFC 9457) that also carry ThingsBoard's <c>message</c>, <c>errorCode</c>
/// and <c>timestamp</c>, so that clients of either kind read it.
/// </summary>
public static class ApiErrors
{
    /// <summary>The response for an error: status, a title, the detail, and ThingsBoard's members.</summary>
    public static IResult Problem(int status, int errorCode, string message, TimeProvider? time = null) =>
        Results.Problem(
            statusCode: status,
            title: Title(status),
            detail: message,
            extensions: new Dictionary<string, object?>
            {
                ["message"] = message,
                ["errorCode"] = errorCode,
                ["timestamp"] = (time ?? TimeProvider.System).GetUtcNow().ToUnixTimeMilliseconds(),
            });

    public static IResult From(PlatformException e) => Problem(e.Status, e.ErrorCode, e.Message);

    private static string Title(int status) => status switch
    {
        400 => "Bad request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not found",
        408 => "Request timeout",
        409 => "Conflict",
        413 => "Payload too large",
        429 => "Too many requests",
        503 => "Service unavailable",
        504 => "Gateway timeout",
        _ => "Error",
    };

    /// <summary>
    /// Turns exceptions thrown by endpoints into problem details (anything unexpected is a 500 without internals),
    /// and gives an error status without a body (an unknown path, a wrong method) one too.
    /// </summary>
    public static IApplicationBuilder UseApiErrors(this IApplicationBuilder app)
    {
        app.UseStatusCodePages(async context =>
        {
            var response = context.HttpContext.Response;
            if (response.StatusCode >= 400 && context.HttpContext.Request.Path.StartsWithSegments("/api"))
            {
                var message = response.StatusCode switch
                {
                    404 => "No such API path.",
                    405 => "This API path does not take that method.",
                    415 => "The request body must be JSON (Content-Type: application/json).",
                    _ => "The request failed.",
                };
                await Problem(response.StatusCode, response.StatusCode == 404 ? 31 : 30, message).ExecuteAsync(context.HttpContext);
            }
        });
        return UseExceptionHandling(app);
    }

    /// <summary>
    /// A client's mistake (any 4xx: a bad JWT, a missing entity, malformed JSON) is answered and not logged: it is
    /// not the server's error, and anyone can cause thousands a second. Only what becomes a 500 is logged, by the
    /// middleware, as an error with its stack trace.
    /// </summary>
    private static bool IsClientError(Exception? error) => error switch
    {
        PlatformException e => e.Status < 500,
        BadHttpRequestException e => e.StatusCode < 500,
        JsonException or FormatException => true,
        _ => false,
    };

    private static IApplicationBuilder UseExceptionHandling(IApplicationBuilder app) => app.UseExceptionHandler(new ExceptionHandlerOptions
    {
        SuppressDiagnosticsCallback = context => IsClientError(context.Exception),
        ExceptionHandler = HandleExceptionAsync,
    });

    private static async Task HandleExceptionAsync(HttpContext context)
    {
        var error = context.Features.Get<IExceptionHandlerFeature>()?.Error;
        if (error is PlatformException { RetryAfter: { } retryAfter })
        {
            context.Response.Headers.RetryAfter = Math.Max(1, (long)Math.Ceiling(retryAfter.TotalSeconds)).ToString(System.Globalization.CultureInfo.InvariantCulture);
        }

        var result = error switch
        {
            PlatformException e => From(e),
            BadHttpRequestException { InnerException: JsonException json } => Problem(400, 30, $"The request body is not valid JSON: {json.Message}"),
            BadHttpRequestException e => Problem(e.StatusCode, 30, e.Message),
            JsonException json => Problem(400, 30, $"The request body is not valid JSON: {json.Message}"),
            FormatException format => Problem(400, 30, format.Message),
            // A write that raced with the deletion of what it belongs to (a tenant deleted meanwhile): not a server fault.
            System.Data.Common.DbException db when Taihu.Platform.Storage.Sql.IsForeignKeyViolation(db) => Problem(404, 31, "What this call refers to no longer exists."),
            _ => Problem(500, 2, "The server failed to handle the request; the error is in its log."),
        };
        await result.ExecuteAsync(context);
    }
}
