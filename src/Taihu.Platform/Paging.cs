namespace Taihu.Platform;

/// <summary>What a list call asks for: ThingsBoard's pageSize, page, textSearch, sortProperty and sortOrder.</summary>
public sealed record PageRequest(int PageSize = 10, int Page = 0, string? TextSearch = null, string? SortProperty = null, bool Descending = false)
{
    /// <summary>Largest page served; a bigger request gets this many.</summary>
    public const int MaxPageSize = 1000;

    public int Limit => Math.Clamp(PageSize, 1, MaxPageSize);

    public long Offset => (long)Math.Max(Page, 0) * Limit;

    /// <summary>The search text as a LIKE pattern (case-insensitive, wildcards in the text taken literally).</summary>
    public string? LikePattern => string.IsNullOrEmpty(TextSearch)
        ? null
        : "%" + TextSearch.ToLowerInvariant().Replace("\\", "\\\\", StringComparison.Ordinal).Replace("%", "\\%", StringComparison.Ordinal).Replace("_", "\\_", StringComparison.Ordinal) + "%";
}

/// <summary>One page of a list, in ThingsBoard's shape.</summary>
public sealed record Page<T>(IReadOnlyList<T> Data, int TotalPages, long TotalElements, bool HasNext);

/// <summary>Builds pages.</summary>
public static class Page
{
    public static Page<T> From<T>(IReadOnlyList<T> data, long total, PageRequest request)
    {
        var pages = (int)((total + request.Limit - 1) / request.Limit);
        return new Page<T>(data, pages, total, request.Offset + data.Count < total);
    }
}

/// <summary>A call refused because the caller asked for something wrong; the API turns it into problem details.</summary>
public class PlatformException(int status, int errorCode, string message) : Exception(message)
{
    /// <summary>HTTP status: 400, 401, 403, 404, 409 or 429.</summary>
    public int Status { get; } = status;

    /// <summary>ThingsBoard's errorCode: 2 general, 10 authentication, 11 jwt expired, 20 permission denied, 30 bad request, 31 item not found, 33 too many requests.</summary>
    public int ErrorCode { get; } = errorCode;

    public static PlatformException NotFound(string what) => new(404, 31, $"{what} was not found.");

    public static PlatformException BadRequest(string message) => new(400, 30, message);

    public static PlatformException Conflict(string message) => new(409, 30, message);

    /// <summary>A part of the platform the request needs cannot be reached now (on a cluster, a node failing); worth trying again.</summary>
    public static PlatformException Unavailable(string message) => new(503, 2, message);

    public static PlatformException Forbidden(string message = "You don't have permission to perform this operation.") => new(403, 20, message);

    public static PlatformException Unauthorized(string message) => new(401, 10, message);

    /// <summary>How long the client should wait before trying again (sent as Retry-After), or null.</summary>
    public TimeSpan? RetryAfter { get; init; }

    /// <summary>429 with ThingsBoard's errorCode 33 and a Retry-After.</summary>
    public static PlatformException TooManyRequests(string message, TimeSpan retryAfter) => new(429, 33, message) { RetryAfter = retryAfter };
}
