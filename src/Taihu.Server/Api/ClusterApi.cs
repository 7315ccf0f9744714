using Microsoft.AspNetCore.Mvc;
using Taihu.Cluster;
using Taihu.Platform.Tenants;

namespace Taihu.Server.Api;

/// <summary>The cluster's nodes, for the system administrator.</summary>
public static class ClusterApi
{
    public static IEndpointRouteBuilder MapClusterApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/cluster/nodes", async (HttpContext context, [FromServices] ClusterNodes? nodes) =>
        {
            var caller = await context.CallerAsync();
            caller.RequireSysAdmin();
            if (nodes is null)
            {
                throw new Taihu.Platform.PlatformException(404, 31, "This server is not a node of a cluster (Cluster:Enabled is false).");
            }

            return Results.Ok(new { clusterId = nodes.ClusterId, nodes = nodes.List() });
        }).WithTags("Cluster").WithName("ListClusterNodes")
          .WithSummary("The cluster's nodes as this node sees them: address, generation, name, status (Active, Dead, ...) and which one is this node.");
        return app;
    }
}
