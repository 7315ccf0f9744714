using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;
using Taihu.Platform;

namespace Taihu.Server.Api;

/// <summary>Which body limit an endpoint has (resolved against the options on each request).</summary>
public enum BodyLimit
{
    /// <summary>The management API: <c>Security:MaxRequestBodyBytes</c> (1 MiB).</summary>
    Management,

    /// <summary>Calls anyone may make (login, refresh, activation, provisioning): <c>Security:MaxUnauthenticatedRequestBytes</c> (4 KiB).</summary>
    Unauthenticated,

    /// <summary>Device telemetry and attributes: <c>Ingest:MaxPayloadBytes</c> (64 KiB).</summary>
    DevicePayload,
}

/// <summary>An endpoint's body limit; endpoints without one get <see cref="BodyLimit.Management"/>.</summary>
public sealed record BodyLimitMetadata(BodyLimit Limit);

/// <summary>
/// Bounds every request body before the endpoint reads it, so that nobody can make the server parse or buffer
/// megabytes of JSON (Kestrel's own default is about 30 MB, and a login body was parsed whole). A body announced
/// larger than the limit is answered 413 at once, unread; a chunked body is read up to the limit and refused as it
/// passes it. Minimal API's JSON binding would take Kestrel's 413 for a broken connection, hence the check here.
/// </summary>
public static class RequestBodyLimits
{
    public static TBuilder WithBodyLimit<TBuilder>(this TBuilder builder, BodyLimit limit)
        where TBuilder : IEndpointConventionBuilder => builder.WithMetadata(new BodyLimitMetadata(limit));

    public static IApplicationBuilder UseRequestBodyLimits(this IApplicationBuilder app) => app.Use(async (context, next) =>
    {
        var detection = context.Features.Get<IHttpRequestBodyDetectionFeature>();
        if (detection is { CanHaveBody: false })
        {
            await next(context);
            return;
        }

        var kind = context.GetEndpoint()?.Metadata.GetMetadata<BodyLimitMetadata>()?.Limit ?? BodyLimit.Management;
        var services = context.RequestServices;
        long limit = kind switch
        {
            BodyLimit.Unauthenticated => services.GetRequiredService<IOptions<SecurityOptions>>().Value.MaxUnauthenticatedRequestBytes,
            BodyLimit.DevicePayload => services.GetRequiredService<IOptions<IngestOptions>>().Value.MaxPayloadBytes,
            _ => services.GetRequiredService<IOptions<SecurityOptions>>().Value.MaxRequestBodyBytes,
        };
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } size)
        {
            size.MaxRequestBodySize = limit;
        }

        if (context.Request.ContentLength is { } length)
        {
            if (length > limit)
            {
                await TooLarge(limit).ExecuteAsync(context);
                return;
            }
        }
        else if (kind != BodyLimit.DevicePayload)
        {
            // Chunked: read it here within the limit (the device API reads its own, within the same limit).
            var buffer = new MemoryStream();
            try
            {
                await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
            }
            catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
            {
                await TooLarge(limit).ExecuteAsync(context);
                return;
            }

            buffer.Position = 0;
            context.Request.Body = buffer;
        }

        await next(context);
    });

    private static IResult TooLarge(long limit) => ApiErrors.Problem(413, 30, $"The request body is larger than {limit} bytes.");
}
