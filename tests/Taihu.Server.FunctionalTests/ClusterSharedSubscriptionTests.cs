using System.Text;
using MQTTnet;
using MQTTnet.Protocol;
using Taihu.Platform.Tests;
using Taihu.Server.FunctionalTests.Support;

namespace Taihu.Server.FunctionalTests;

/// <summary>
/// Shared subscriptions across three real server processes of one cluster: each message goes to one member of a
/// group across the whole cluster, never one per node. A group with members on the publisher's node takes it
/// there; one with members only on other nodes takes it on one of them, in turn.
/// </summary>
[Collection(PostgresCollection.Name)]
public sealed class ClusterSharedSubscriptionTests(PostgresServer postgres)
{
    private const int Jobs = 20;

    [Fact]
    public async Task SharedGroup_WithMembersOnTwoNodes_GetsEachMessageOnce_ClusterWide()
    {
        var database = await postgres.CreateDatabaseAsync();
        var nodes = new List<ServerProcess>();
        try
        {
            await ClusterSettings.StartNodesAsync(postgres, database, "shared", 3, nodes);
            var (a, b, c) = (nodes[0], nodes[1], nodes[2]);

            // Group "workers" has a member on A and one on B; group "solo" one member, on B. Each member also
            // holds a plain subscription to "jobs-done": the end marker, sent after the jobs on the same path.
            await using var workerA = await MqttTestClient.ConnectTcpAsync(a, "worker-a");
            await using var workerB = await MqttTestClient.ConnectTcpAsync(b, "worker-b");
            await using var soloB = await MqttTestClient.ConnectTcpAsync(b, "solo-b");
            foreach (var (client, group) in new[] { (workerA, "workers"), (workerB, "workers"), (soloB, "solo") })
            {
                await client.SubscribeAsync($"$share/{group}/job/#");
                await client.SubscribeAsync("jobs-done");
            }

            // C knows A's two routes and B's three (two groups and one plain filter).
            await Metrics.WaitForAsync(c, "taihu_cluster_remote_routes", count => count == 5);

            // Published on C, where the groups have no member: "workers" gets each job on A or on B in turn, once.
            await using var publisherC = await MqttTestClient.ConnectTcpAsync(c, "publisher-c");
            await PublishJobsAsync(publisherC, "from-c");
            var onA = await JobsUntilDoneAsync(workerA);
            var onB = await JobsUntilDoneAsync(workerB);
            Assert.Equal(Jobs, onA.Count + onB.Count);
            Assert.Equal(Enumerable.Range(0, Jobs).Select(i => $"from-c-{i}").Order(StringComparer.Ordinal), onA.Concat(onB).Order(StringComparer.Ordinal));
            Assert.NotEmpty(onA);
            Assert.NotEmpty(onB);
            Assert.Equal(Jobs, (await JobsUntilDoneAsync(soloB)).Count);

            // Published on A, where "workers" has a member (A knows B's three routes): A's member gets them all, B's none; "solo" still gets
            // each one on B.
            await Metrics.WaitForAsync(a, "taihu_cluster_remote_routes", count => count == 3);
            await using var publisherA = await MqttTestClient.ConnectTcpAsync(a, "publisher-a");
            await PublishJobsAsync(publisherA, "from-a");
            Assert.Equal(Jobs, (await JobsUntilDoneAsync(workerA)).Count);
            Assert.Empty(await JobsUntilDoneAsync(workerB));
            Assert.Equal(Jobs, (await JobsUntilDoneAsync(soloB)).Count);
        }
        finally
        {
            foreach (var node in nodes)
            {
                await node.DisposeAsync();
            }

            await postgres.DropDatabaseAsync(database);
        }
    }

    private static async Task PublishJobsAsync(MqttTestClient publisher, string prefix)
    {
        for (var i = 0; i < Jobs; i++)
        {
            await publisher.PublishAsync($"job/{i % 3}", $"{prefix}-{i}");
        }

        await publisher.Client.PublishAsync(new MqttApplicationMessageBuilder().WithTopic("jobs-done").WithPayload("done")
            .WithQualityOfServiceLevel(MqttQualityOfServiceLevel.AtLeastOnce).Build());
    }

    /// <summary>The jobs a member receives before the end marker, each checked to come once.</summary>
    private static async Task<List<string>> JobsUntilDoneAsync(MqttTestClient member)
    {
        var jobs = new List<string>();
        while (true)
        {
            var message = await member.NextAsync();
            var payload = Encoding.UTF8.GetString(message.Payload);
            if (message.Topic == "jobs-done")
            {
                return jobs;
            }

            Assert.DoesNotContain(payload, jobs);
            jobs.Add(payload);
        }
    }
}
