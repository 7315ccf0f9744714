using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Taihu.Broker.Logging;
using Taihu.Broker.Routing;
using Taihu.Mqtt;
using Taihu.Mqtt.Packets;

namespace Taihu.Broker;

/// <summary>DISCONNECT, keep alive, takeover and closing.</summary>
public sealed partial class MqttChannel
{
    private bool HandleDisconnect(DisconnectPacket disconnect)
    {
        if (IsV5 && disconnect.Properties?.SessionExpiryInterval is { } expiry)
        {
            if (_connectSessionExpiry == 0 && expiry != 0)
            {
                // 5.0 section 3.14.2.2.2.
                Close(ReasonCode.ProtocolError, "The session expiry cannot be set on DISCONNECT when CONNECT had none.", publishWill: true);
                return false;
            }

            _session!.SetExpiryInterval(Math.Min(expiry, _broker.Options.MaximumSessionExpiryInterval));
        }

        // 5.0 section 3.1.2.5: only a DISCONNECT with 0x00 removes the will; 0x04 and every error code publish it.
        var withWill = IsV5 && disconnect.ReasonCode != ReasonCode.NormalDisconnection;
        Close(ReasonCode.Success, null, publishWill: withWill, sendDisconnect: false);
        DetachFromSession();
        return false;
    }

    /// <summary>
    /// Called by housekeeping: closes the connection when its keep alive (times 1.5) or the CONNECT deadline passed.
    /// Returns the timestamp at which to look again (the deadline as it stands now), or 0 when there is nothing more
    /// to watch (closed, or connected without keep alive).
    /// </summary>
    internal long CheckTimeouts(long now)
    {
        var time = _broker.Time;
        if (_state == State.Connected)
        {
            if (_keepAlive == 0)
            {
                return 0;
            }

            var last = Volatile.Read(ref _lastActivity);
            if (time.GetElapsedTime(last, now).TotalSeconds >= _keepAlive * 1.5)
            {
                var logger = _broker.Logger;
                if (logger.IsEnabled(LogLevel.Information))
                {
#pragma warning disable CA1873 // Guarded by logger.IsEnabled just above, which the analyzer does not see through.
                    LogKeepAliveTimeout(logger, LogText.Clean(ClientId), _keepAlive);
#pragma warning restore CA1873
                }

                Close(ReasonCode.KeepAliveTimeout, "Keep alive timeout.", publishWill: true);
                return 0;
            }

            return last + ((long)_keepAlive * 3 * time.TimestampFrequency + 1) / 2;
        }

        if (_state is State.AwaitingConnect or State.Authenticating)
        {
            if (time.GetElapsedTime(_openedAt, now).TotalSeconds >= _broker.Options.ConnectTimeoutSeconds)
            {
                Close(ReasonCode.MaximumConnectTime, null, publishWill: false, sendDisconnect: false);
                return 0;
            }

            return _openedAt + (long)_broker.Options.ConnectTimeoutSeconds * time.TimestampFrequency;
        }

        return 0;
    }

    /// <summary>Another connection took the session over: tell this one 0x8E and close it.</summary>
    internal void Kick() => Close(ReasonCode.SessionTakenOver, "Another connection took the session over.", publishWill: true);

    /// <summary>
    /// Closes the connection: a 5.0 client that completed CONNECT gets DISCONNECT with <paramref name="code"/>
    /// first (unless it is the one who disconnected); then everything queued is flushed and the socket closed.
    /// </summary>
    public void Close(ReasonCode code, string? reason, bool publishWill, bool sendDisconnect = true)
    {
        if (Interlocked.Exchange(ref _closed, 1) != 0)
        {
            return;
        }

        _suppressWill = !publishWill;
        if (sendDisconnect && IsV5 && _state == State.Connected && code != ReasonCode.Success)
        {
            Enqueue(new OutboundItem(new DisconnectPacket { ReasonCode = code, Properties = ReasonProperties(reason) }));
            SentDisconnect = true;
        }

        if (_outbound.Complete())
        {
            _transport?.ScheduleSend();
        }

        _transport?.StopReceiving();
    }

    /// <summary>
    /// True when the broker queued a DISCONNECT before closing: the transport should let the client read it
    /// (see <see cref="Transport.MqttConnectionRunner"/>, lingering close) rather than reset the connection.
    /// </summary>
    internal bool SentDisconnect { get; private set; }

    /// <summary>The transport is gone: detach from the session and handle the will.</summary>
    public void OnTransportClosed()
    {
        Interlocked.Exchange(ref _closed, 1);
        _outbound.Complete();
        DetachFromSession();
        _broker.Unregister(_id);
        while (_outbound.TryDequeue(out var left))
        {
            left.Message?.Release();
        }
    }

    /// <summary>
    /// Gives the session back to the broker (kept or ended per its expiry) and handles the will. Runs once, as
    /// soon as the connection is known to be over (a DISCONNECT, an error, the socket closing), before what is
    /// still queued has been flushed: a client that reconnects at once must find its session already detached.
    /// </summary>
    internal void DetachFromSession()
    {
        if (Interlocked.Exchange(ref _detached, 1) != 0)
        {
            return;
        }

        var wasConnected = _state == State.Connected;
        _state = State.Closed;
        if (!wasConnected || _session is null)
        {
            return;
        }

        _broker.Metrics.ClientDisconnected();
        BrokerMessage? will = null;
        uint willDelay = 0;
        if (!_suppressWill && _will is { } w)
        {
            var topic = _identity.Topics is { } map ? map.ToBroker(w.Topic) : w.Topic;
            if (IsWillStillAuthorized(topic))
            {
                will = BrokerMessage.Create(_identity.Namespace, topic, w.Payload, owner: null, w.QoS, w.Retain, w.Properties, _broker.Time.GetUtcNow(), ClientId, _identity.SessionOwner ?? "");
                willDelay = w.Properties?.WillDelayInterval ?? 0;
            }
        }

        if (will is null && _will is not null && _session.IsAttachedTo(this))
        {
            // A will not sent (a normal DISCONNECT, or no longer authorized) is done with on this node.
            _broker.ClusterLink?.OnWillDone(_identity.Namespace, _identity.SessionOwner ?? "", ClientId!);
        }

        _broker.DetachSession(this, _session, will, willDelay);
        _broker.LifecycleObserver?.OnDisconnected(_identity, ClientId!);
        var logger = _broker.Logger;
        if (logger.IsEnabled(LogLevel.Information))
        {
#pragma warning disable CA1873 // Guarded by logger.IsEnabled just above, which the analyzer does not see through.
            LogDisconnected(logger, LogText.Clean(ClientId), _suppressWill ? "normal" : "abnormal");
#pragma warning restore CA1873
        }
    }

    /// <summary>
    /// Asks the authorizer again when the will is about to go out: rights can change while the client is
    /// connected (a device moved or deleted). This runs as the connection ends and cannot wait, so an answer the
    /// authorizer gives synchronously (the platform's does) decides; an asynchronous one keeps CONNECT's answer.
    /// </summary>
    private bool IsWillStillAuthorized(string topic)
    {
        if (IsSysTopic(topic))
        {
            return false;
        }

        ValueTask<ReasonCode> pending;
        try
        {
            pending = _broker.Authorizer.AuthorizePublishAsync(_identity, ClientId!, topic, CancellationToken.None);
            if (!pending.IsCompleted)
            {
                _ = pending.AsTask();
                return true;
            }

            return pending.Result == ReasonCode.Success;
        }
        catch (Exception)
        {
            // An authorizer that fails now: nothing proves the will may go, so it does not.
            return false;
        }
    }
}
