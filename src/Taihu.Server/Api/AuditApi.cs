using Taihu.Platform.Audit;
using Taihu.Platform.Tenants;

namespace Taihu.Server.Api;

/// <summary>The audit trail, within the caller's tenant.</summary>
public static class AuditApi
{
    public static IEndpointRouteBuilder MapAuditApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/audit/logs", async (int? pageSize, int? page, string? textSearch, string? sortProperty, string? sortOrder, long? startTime, long? endTime,
            HttpContext context, IAuditLog audit, CancellationToken ct) =>
        {
            var caller = await context.CallerAsync();
            if (caller.Authority is not (Authority.SysAdmin or Authority.TenantAdmin))
            {
                throw Taihu.Platform.PlatformException.Forbidden();
            }

            var request = Shapes.Paging(pageSize, page, textSearch, sortProperty, sortOrder ?? "DESC");
            return Results.Ok((await audit.ListAsync(caller.TenantId, request, startTime, endTime, ct)).Map(a => a.ToDto()));
        }).WithTags("Audit").WithName("ListAuditLogs").WithSummary("Changes made by users and API keys of the caller's tenant, newest first.");
        return app;
    }
}
