using System.Net;
using Orleans.Runtime;
using Taihu.Cluster.Mqtt;

namespace Taihu.Cluster.Tests;

/// <summary>The session registry's state, driven without Orleans: holders, claim numbers, turns and releases.</summary>
public sealed class SessionHoldersTests
{
    private static readonly SiloAddress s_nodeA = SiloAddress.New(new IPEndPoint(IPAddress.Loopback, 11111), 1);
    private static readonly SiloAddress s_nodeB = SiloAddress.New(new IPEndPoint(IPAddress.Loopback, 11112), 1);

    [Fact]
    public async Task Claim_TakesTheHolder_AndGivesTheOneBefore_UnderANewNumber()
    {
        var holders = new SessionHolders();
        var entry = await holders.TurnAsync("k");
        Assert.Null(holders.Take(entry, s_nodeA, out var first));
        SessionHolders.EndTurn(entry);

        entry = await holders.TurnAsync("k");
        Assert.Equal(s_nodeA, holders.Take(entry, s_nodeB, out var second));
        SessionHolders.EndTurn(entry);

        Assert.True(second > first);
        Assert.Equal(s_nodeB, holders.HolderOf("k"));
    }

    [Fact]
    public async Task ASecondClaimOfOneClient_WaitsForTheFirstsTurn_AnotherClientsDoesNot()
    {
        var holders = new SessionHolders();
        var first = await holders.TurnAsync("k");
        holders.Take(first, s_nodeA, out _);

        var second = holders.TurnAsync("k").AsTask();
        var other = holders.TurnAsync("other").AsTask();
        Assert.True(other.IsCompletedSuccessfully);
        Assert.False(second.IsCompleted);

        SessionHolders.EndTurn(first);
        var entry = await second.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(s_nodeA, holders.Take(entry, s_nodeB, out _));
        SessionHolders.EndTurn(entry);
    }

    [Fact]
    public async Task Release_ForgetsTheHolder_OnlyUnderItsOwnClaim()
    {
        var holders = new SessionHolders();
        var entry = await holders.TurnAsync("k");
        holders.Take(entry, s_nodeA, out var old);
        SessionHolders.EndTurn(entry);
        entry = await holders.TurnAsync("k");
        holders.Take(entry, s_nodeA, out var renewed);
        SessionHolders.EndTurn(entry);

        // The end of the session of the first claim, heard after the client connected to the same node again.
        holders.Release("k", s_nodeA, old);
        Assert.Equal(s_nodeA, holders.HolderOf("k"));

        // Another node's release, and a release of an unknown client, change nothing.
        holders.Release("k", s_nodeB, renewed);
        holders.Release("unknown", s_nodeA, renewed);
        Assert.Equal(s_nodeA, holders.HolderOf("k"));

        holders.Release("k", s_nodeA, renewed);
        Assert.Null(holders.HolderOf("k"));
        Assert.Equal(0, holders.Count);
    }

    [Fact]
    public async Task Release_WhileAClaimWaitsForItsTurn_KeepsTheEntryThatClaimWillWriteTo()
    {
        var holders = new SessionHolders();
        var entry = await holders.TurnAsync("k");
        holders.Take(entry, s_nodeA, out var claim);
        var waiting = holders.TurnAsync("k").AsTask();
        SessionHolders.EndTurn(entry);

        // The turn is free, but the waiting claim has not run yet: the release must not drop its entry.
        holders.Release("k", s_nodeA, claim);
        var next = await waiting.WaitAsync(TimeSpan.FromSeconds(10));
        holders.Take(next, s_nodeB, out _);
        SessionHolders.EndTurn(next);
        Assert.Equal(s_nodeB, holders.HolderOf("k"));
    }

    [Fact]
    public async Task Restore_KeepsTheLaterClaim_AndNewClaimsNumberPastIt()
    {
        var holders = new SessionHolders(lastClaim: 100);
        holders.Restore("k", s_nodeA, 500);
        holders.Restore("k", s_nodeB, 300); // an older claim, on a node that has not ended the session yet
        Assert.Equal(s_nodeA, holders.HolderOf("k"));
        holders.Restore("j", s_nodeB, 200);
        Assert.Equal(s_nodeB, holders.HolderOf("j"));

        var entry = await holders.TurnAsync("k");
        Assert.Equal(s_nodeA, holders.Take(entry, s_nodeB, out var claim));
        SessionHolders.EndTurn(entry);
        Assert.True(claim > 500);
    }

    [Theory]
    [InlineData("tenant", "", "device-1")]
    [InlineData("", "", "")]
    [InlineData("9f1c", "owner-7", "沈阳-01")]
    [InlineData("a:b", "12:x", "3:y")]
    public void PartitionOfTheParts_IsThePartitionOfTheKey(string ns, string owner, string clientId) =>
        Assert.Equal(SessionRegistry.PartitionOf(SessionRegistry.KeyOf(ns, owner, clientId)), SessionRegistry.PartitionOf(ns, owner, clientId));

    [Fact]
    public void Partition_IsTheSameInEveryProcess_AndKeysOfDifferentPartsDiffer()
    {
        // FNV-1a, fixed: a process that spread keys otherwise would ask another grain than the one holding them.
        Assert.Equal(31, SessionRegistry.PartitionOf(SessionRegistry.KeyOf("tenant", "", "device-1")));
        for (var i = 0; i < 1000; i++)
        {
            var partition = SessionRegistry.PartitionOf($"client-{i}");
            Assert.InRange(partition, 0, SessionRegistry.Partitions - 1);
        }

        Assert.NotEqual(SessionRegistry.KeyOf("a", "b", "c"), SessionRegistry.KeyOf("a", "", "bc"));
    }

    [Fact]
    public void ByPartition_PutsEachHeldSessionInItsPartition_AndGivesEveryPartitionAnAnswer()
    {
        var held = new List<(string, string, string, long)>();
        for (var i = 0; i < 2000; i++)
        {
            held.Add(($"tenant-{i % 3}", i % 2 == 0 ? "" : "owner", $"device-{i}", 1000 + i));
        }

        var byPartition = SessionRegistry.ByPartition(held);

        Assert.Equal(SessionRegistry.Partitions, byPartition.Length);
        var count = 0;
        for (var partition = 0; partition < byPartition.Length; partition++)
        {
            Assert.NotNull(byPartition[partition]);
            foreach (var session in byPartition[partition])
            {
                Assert.Equal(partition, SessionRegistry.PartitionOf(session.Namespace, session.Owner, session.ClientId));
                Assert.Equal(1000 + int.Parse(session.ClientId["device-".Length..], System.Globalization.CultureInfo.InvariantCulture), session.Claim);
                count++;
            }
        }

        Assert.Equal(held.Count, count);
        Assert.Empty(SessionRegistry.ByPartition([])[17]);
    }
}
