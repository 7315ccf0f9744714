using Microsoft.Extensions.Time.Testing;
using Taihu.Broker.Routing;
using Taihu.Broker.Sessions;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker.Tests;

/// <summary>
/// The session driven directly, without a broker, connection or socket: work is handed to it by calling its
/// methods, and what it sends is recorded by a test output (the role the connection plays).
/// </summary>
public sealed class SessionStateTests
{
    private readonly FakeTimeProvider _time = new(new DateTimeOffset(2026, 12, 3, 0, 0, 0, TimeSpan.Zero));
    private readonly BrokerOptions _options = new() { MaximumQueuedMessages = 4, FullQueuePublisherWait = TimeSpan.FromSeconds(5) };

    private MqttSession NewSession(string clientId = "c") => new("", clientId, "", new SessionServices(_options, _time, new BrokerMetrics()));

    private BrokerMessage Message(string topic = "t", QoS qos = QoS.AtLeastOnce) =>
        BrokerMessage.Create("", topic, "x"u8.ToArray(), owner: null, qos, retain: false, properties: null, _time.GetUtcNow(), originClientId: null);

    [Fact]
    public void Deliveries_FillTheWindow_ThenQueue_AndEachAcknowledgementMovesTheQueueUp()
    {
        var session = NewSession();
        var output = new RecordingOutput(sendQuota: 2);
        session.Attach(output, expiryInterval: 0);
        for (var i = 0; i < 3; i++)
        {
            var message = Message();
            Assert.Equal(DeliveryResult.Accepted, session.Deliver(message, QoS.AtLeastOnce, retain: false, null, null, mayHoldPublisher: false));
            message.Release();
        }

        Assert.Equal([1, 2], output.PacketIds);
        Assert.Equal((2, 1), (session.InflightCount, session.QueuedCount));

        Assert.Equal(AckResult.Completed, session.Acknowledge(PacketType.PubAck, 1, ReasonCode.Success));
        Assert.Equal([1, 2, 3], output.PacketIds);
        Assert.Equal((2, 0), (session.InflightCount, session.QueuedCount));

        Assert.Equal(AckResult.Unknown, session.Acknowledge(PacketType.PubAck, 1, ReasonCode.Success));
        Assert.Equal(AckResult.Mismatch, session.Acknowledge(PacketType.PubComp, 2, ReasonCode.Success));
    }

    [Fact]
    public void QoS2_PubRecReleases_PubCompCompletes_AndAFailedPubRecEndsTheExchange()
    {
        var session = NewSession();
        var output = new RecordingOutput(sendQuota: 10);
        session.Attach(output, expiryInterval: 0);
        for (var i = 0; i < 2; i++)
        {
            var message = Message(qos: QoS.ExactlyOnce);
            session.Deliver(message, QoS.ExactlyOnce, retain: false, null, null, mayHoldPublisher: false);
            message.Release();
        }

        Assert.Equal(AckResult.Mismatch, session.Acknowledge(PacketType.PubAck, 1, ReasonCode.Success));
        Assert.Equal(AckResult.Mismatch, session.Acknowledge(PacketType.PubComp, 1, ReasonCode.Success));
        Assert.Equal(AckResult.Released, session.Acknowledge(PacketType.PubRec, 1, ReasonCode.Success));
        Assert.Equal(AckResult.Completed, session.Acknowledge(PacketType.PubComp, 1, ReasonCode.Success));
        Assert.Equal(AckResult.Completed, session.Acknowledge(PacketType.PubRec, 2, ReasonCode.UnspecifiedError));
        Assert.Equal(0, session.InflightCount);
    }

    [Fact]
    public async Task FullQueue_HoldsAPublisherThatMayWait_UntilTheSubscriberAcknowledges_AndDropsOtherwise()
    {
        var session = NewSession();
        var output = new RecordingOutput(sendQuota: 1);
        session.Attach(output, expiryInterval: 60);
        for (var i = 0; i < 5; i++)
        {
            var message = Message();
            Assert.Equal(DeliveryResult.Accepted, session.Deliver(message, QoS.AtLeastOnce, retain: false, null, null, mayHoldPublisher: true));
            message.Release();
        }

        // One in flight, four queued: the queue is full.
        var held = Message();
        Assert.Equal(DeliveryResult.Congested, session.Deliver(held, QoS.AtLeastOnce, retain: false, null, null, mayHoldPublisher: true));
        var notHeld = Message();
        Assert.Equal(DeliveryResult.Dropped, session.Deliver(notHeld, QoS.AtLeastOnce, retain: false, null, null, mayHoldPublisher: false));
        held.Release();
        notHeld.Release();

        var waiting = session.WaitForRoomAsync(CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);
        for (ushort id = 1; id <= 2; id++)
        {
            session.Acknowledge(PacketType.PubAck, id, ReasonCode.Success);
        }

        await waiting.WaitAsync(TimeSpan.FromSeconds(10));

        // Nothing of the six accepted is lost: two acknowledged, one in flight, three queued (the held one last).
        Assert.Equal([1, 2, 3], output.PacketIds);
        Assert.Equal((1, 3), (session.InflightCount, session.QueuedCount));
    }

    [Fact]
    public void FullQueue_HoldsEveryPublisherOfABurst_PastTheMessageLimit_UpToTwiceTheByteLimit()
    {
        // A burst: a thousand devices each publish one message at once to one subscriber whose queue holds four.
        var options = new BrokerOptions { MaximumQueuedMessages = 4, MaximumQueuedBytes = 64 * 1024, FullQueuePublisherWait = TimeSpan.FromSeconds(5) };
        var session = new MqttSession("", "burst", "", new SessionServices(options, _time, new BrokerMetrics()));
        var output = new RecordingOutput(sendQuota: 1);
        session.Attach(output, expiryInterval: 60);
        var results = new Dictionary<DeliveryResult, int>();
        for (var i = 0; i < 1000; i++)
        {
            var message = Message();
            var result = session.Deliver(message, QoS.AtLeastOnce, retain: false, null, null, mayHoldPublisher: true);
            results[result] = results.GetValueOrDefault(result) + 1;
            message.Release();
        }

        // One in flight, four queued within the limit, the other 995 held (each publisher waits); none dropped.
        Assert.Equal(5, results[DeliveryResult.Accepted]);
        Assert.Equal(995, results[DeliveryResult.Congested]);
        Assert.False(results.ContainsKey(DeliveryResult.Dropped));
        Assert.Equal((1, 999), (session.InflightCount, session.QueuedCount));

        // A message another node accepted (its publisher cannot be held from here) is kept the same way.
        var fromNode = Message();
        Assert.Equal(DeliveryResult.Accepted, session.Deliver(fromNode, QoS.AtLeastOnce, retain: false, null, null, mayHoldPublisher: false, fromOtherNode: true));
        fromNode.Release();
        Assert.Equal(1000, session.QueuedCount);

        // Memory stays bounded: past twice the byte limit even a publisher that may wait loses its message.
        var large = BrokerMessage.Create("", "t/large", new byte[(int)options.MaximumQueuedBytes * 2], owner: null, QoS.AtLeastOnce, retain: false, null, _time.GetUtcNow(), "p");
        Assert.Equal(DeliveryResult.Dropped, session.Deliver(large, QoS.AtLeastOnce, retain: false, null, null, mayHoldPublisher: true));
        large.Release();
    }

    [Fact]
    public async Task HeldPublisher_StopsWaiting_AfterFullQueuePublisherWait_AndTheSessionIsMarkedStalled()
    {
        var session = NewSession();
        session.Attach(new RecordingOutput(sendQuota: 1), expiryInterval: 60);
        for (var i = 0; i < 6; i++)
        {
            var message = Message();
            session.Deliver(message, QoS.AtLeastOnce, retain: false, null, null, mayHoldPublisher: true);
            message.Release();
        }

        var waiting = session.WaitForRoomAsync(CancellationToken.None).AsTask();
        Assert.False(waiting.IsCompleted);
        _time.Advance(TimeSpan.FromSeconds(5));
        await waiting.WaitAsync(TimeSpan.FromSeconds(10));

        // Stalled: the next publisher is not held, and what overflows is dropped.
        var next = Message();
        Assert.Equal(DeliveryResult.Dropped, session.Deliver(next, QoS.AtLeastOnce, retain: false, null, null, mayHoldPublisher: true));
        next.Release();
    }

    [Fact]
    public void TakeOver_ReturnsTheOldOutput_AndACleanSessionHasNothingToResume()
    {
        var session = NewSession();
        var first = new RecordingOutput(sendQuota: 10);
        session.Attach(first, expiryInterval: 0);

        Assert.False(session.TakeOver(cleanStart: false, out var previous));
        Assert.Same(first, previous);
        Assert.False(session.IsConnected);

        var persistent = NewSession("p");
        persistent.Attach(first, expiryInterval: 60);
        Assert.True(persistent.TakeOver(cleanStart: false, out _));
        persistent.Attach(first, expiryInterval: 60);
        Assert.False(persistent.TakeOver(cleanStart: true, out _));
    }

    [Fact]
    public void Detach_KeepsADelayedWill_UntilItIsDue_AndAReconnectCancelsIt()
    {
        var session = NewSession();
        var output = new RecordingOutput(sendQuota: 10);
        session.Attach(output, expiryInterval: 3600);
        var will = Message("will");
        Assert.Null(session.Detach(output, _time.GetUtcNow(), will, willDelay: 30, out var end, out _));
        Assert.False(end);
        Assert.True(session.IsWillPending);

        _time.Advance(TimeSpan.FromSeconds(29));
        Assert.Null(session.CheckAway(_time.GetUtcNow(), out var expired));
        Assert.False(expired);
        _time.Advance(TimeSpan.FromSeconds(1));
        var due = session.CheckAway(_time.GetUtcNow(), out _);
        Assert.Same(will, due);
        due!.Release();

        var again = Message("will");
        session.Attach(output, expiryInterval: 3600);
        session.Detach(output, _time.GetUtcNow(), again, willDelay: 30, out _, out _);
        session.Attach(new RecordingOutput(sendQuota: 10), expiryInterval: 3600);
        Assert.False(session.IsWillPending);
    }

    [Fact]
    public void Detach_OfAConnectionThatLostTheSession_SendsAWillWithoutDelay_AndCancelsADelayedOne()
    {
        var session = NewSession();
        var old = new RecordingOutput(sendQuota: 10);
        session.Attach(old, expiryInterval: 3600);
        session.TakeOver(cleanStart: false, out _);
        session.Attach(new RecordingOutput(sendQuota: 10), expiryInterval: 3600);

        var now = Message("will");
        Assert.Same(now, session.Detach(old, _time.GetUtcNow(), now, willDelay: 0, out var end, out _));
        Assert.False(end);
        now.Release();

        // The test keeps a reference of its own, so that the message the session lets go of is not returned to the
        // shared pool (and taken by a test running beside this one) before its count is read.
        var delayed = Message("will");
        delayed.AddReference();
        Assert.Null(session.Detach(old, _time.GetUtcNow(), delayed, willDelay: 10, out _, out _));
        Assert.Equal(1, delayed.ReferenceCount);
        delayed.Release();
        Assert.True(session.IsConnected);
    }

    [Fact]
    public void SessionState_IsReachableOnlyThroughTheSessionsOwnMethods()
    {
        // Every field is private and no property can be set from outside: nothing but MqttSession's own methods
        // can change a session's state (docs/architecture.md, "One owner per session").
        var flags = System.Reflection.BindingFlags.Instance | System.Reflection.BindingFlags.Public | System.Reflection.BindingFlags.NonPublic;
        Assert.All(typeof(MqttSession).GetFields(flags), field => Assert.True(field.IsPrivate, $"{field.Name} is not private"));
        Assert.All(typeof(MqttSession).GetProperties(flags), property =>
            Assert.True(property.SetMethod is null || property.SetMethod.IsPrivate, $"{property.Name} can be set from outside"));
    }

    /// <summary>Records what the session sends, as a connection's outbound queue would queue it.</summary>
    private sealed class RecordingOutput(int sendQuota) : ISessionOutput
    {
        public List<int> PacketIds { get; } = [];

        public List<(PacketType Type, ushort PacketId)> Acks { get; } = [];

        public bool Kicked { get; private set; }

        public int SendQuota => sendQuota;

        public void EnqueuePublish(BrokerMessage message, QoS qos, bool retain, bool dup, ushort packetId, List<uint>? subscriptionIds)
        {
            if (qos != QoS.AtMostOnce)
            {
                PacketIds.Add(packetId);
            }
        }

        public void EnqueueAck(PacketType type, ushort packetId, ReasonCode code) => Acks.Add((type, packetId));

        public void Kick() => Kicked = true;
    }
}
