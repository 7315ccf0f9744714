using System.Threading.Channels;
using Orleans.Runtime;
using Taihu.Broker.Extensibility;

namespace Taihu.Cluster.Mqtt;

internal sealed partial class ClusterMqttLink
{
    /// <summary>
    /// What this node sends to one other node: route changes and messages in one queue, in the order they came,
    /// sent by one loop in batches of up to <see cref="MaximumBatch"/>, one call at a time. A failed call is made
    /// again with the same batch (the receiver skips a batch number it has applied) until the node is declared
    /// dead and the peer is disposed.
    /// </summary>
    /// <summary>One of this node's retained messages, for a node that joined after it (see <see cref="NodeBatch.Retained"/>).</summary>
    private sealed record RetainedCopy(ForwardedMessage Message);

    /// <summary>A client's message whose acknowledgement waits until the node has it (see <see cref="ForwardWait"/>).</summary>
    private sealed record AwaitedCopy(ForwardedMessage Message, ForwardWait Wait);

    /// <summary>
    /// The nodes a client's message still has to reach before its publisher is acknowledged: one count per node it
    /// was queued for, plus one held by <see cref="Forward(BrokerMessage, IForwardReceipt?)"/> until all are queued.
    /// A node counts once its batch with the message was answered, or once it was declared dead (its queue dropped).
    /// </summary>
    private sealed class ForwardWait(IForwardReceipt receipt)
    {
        private int _remaining = 1;

        public void Add() => Interlocked.Increment(ref _remaining);

        public void Signal()
        {
            if (Interlocked.Decrement(ref _remaining) == 0)
            {
                receipt.OnForwarded();
            }
        }
    }

    private sealed class Peer(ClusterMqttLink link, SiloAddress node) : IDisposable
    {
        /// <summary>Wait before a failed batch is sent again.</summary>
        private static readonly TimeSpan s_retryDelay = TimeSpan.FromMilliseconds(200);

        private readonly Channel<object> _queue = Channel.CreateUnbounded<object>(new UnboundedChannelOptions { SingleReader = true });
        private readonly CancellationTokenSource _stop = new();
        private long _sequence;

        public void Enqueue(RouteChange change) => _queue.Writer.TryWrite(change);

        public void Enqueue(ForwardedMessage message) => _queue.Writer.TryWrite(message);

        public void Enqueue(RetainedCopy retained) => _queue.Writer.TryWrite(retained);

        public void Enqueue(AwaitedCopy awaited)
        {
            if (!_queue.Writer.TryWrite(awaited))
            {
                // The node was declared dead meanwhile: nothing waits for it.
                awaited.Wait.Signal();
            }
        }

        public void Start()
        {
            var token = _stop.Token;
            _ = Task.Run(() => RunAsync(token), CancellationToken.None);
        }

        /// <summary>The node is dead (or this one stops): what is queued for it is dropped, a retry is given up.</summary>
        public void Dispose()
        {
            _queue.Writer.TryComplete();
            _stop.Cancel();
            _stop.Dispose();
        }

        private async Task RunAsync(CancellationToken token)
        {
            var reader = _queue.Reader;
            List<ForwardWait>? waits = null;
            try
            {
                while (await reader.WaitToReadAsync(token))
                {
                    var batch = new NodeBatch { Sequence = ++_sequence };
                    var count = 0;
                    while (count < MaximumBatch && reader.TryRead(out var item))
                    {
                        switch (item)
                        {
                            case RouteChange change:
                                (batch.Routes ??= []).Add(change);
                                break;
                            case RetainedCopy retained:
                                (batch.Retained ??= []).Add(retained.Message);
                                break;
                            case AwaitedCopy awaited:
                                (batch.Messages ??= []).Add(awaited.Message);
                                (waits ??= []).Add(awaited.Wait);
                                break;
                            default:
                                (batch.Messages ??= []).Add((ForwardedMessage)item);
                                break;
                        }

                        count++;
                    }

                    await SendAsync(batch, token);
                    SignalAll(waits);
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
            }
            finally
            {
                // Declared dead (or this node stops): what waited for it, sent or not, waits no longer. Told from the
                // thread pool: this can run inline in Dispose, under the link's lock, and a receipt acknowledges and
                // routes the publisher's next messages, which takes the subscription trie's lock.
                var pending = waits ?? [];
                while (reader.TryRead(out var item))
                {
                    if (item is AwaitedCopy awaited)
                    {
                        pending.Add(awaited.Wait);
                    }
                }

                if (pending.Count > 0)
                {
                    ThreadPool.UnsafeQueueUserWorkItem(static list => SignalAll(list), pending, preferLocal: false);
                }
            }
        }

        private static void SignalAll(List<ForwardWait>? waits)
        {
            if (waits is null)
            {
                return;
            }

            foreach (var wait in waits)
            {
                wait.Signal();
            }

            waits.Clear();
        }

        private async Task SendAsync(NodeBatch batch, CancellationToken token)
        {
            while (true)
            {
                try
                {
                    await link.Nodes.On(node).Receive(link._local.SiloAddress, batch).WaitAsync(token);
                    return;
                }
                catch (Exception e) when (e is not OperationCanceledException || !token.IsCancellationRequested)
                {
                    LogSendFailed(link._logger, node, e.Message);
                    await Task.Delay(s_retryDelay, link._time, token);
                }
            }
        }
    }
}
