using System.Diagnostics.Metrics;
using Microsoft.Extensions.DependencyInjection;

namespace Taihu.Broker.Tests.Support;

/// <summary>
/// Sums one counter of one broker's meter (tests run in parallel, each broker has its own) for measurements that
/// carry <c>tag=value</c>.
/// </summary>
public sealed class TaggedCounter : IDisposable
{
    private readonly MeterListener _listener = new();
    private long _count;

    public TaggedCounter(BrokerHost host, string instrument, string tag, string value)
    {
        var factory = host.Services.GetRequiredService<IMeterFactory>();
        _listener.InstrumentPublished = (published, listener) =>
        {
            if (ReferenceEquals(published.Meter.Scope, factory) && published.Name == instrument)
            {
                listener.EnableMeasurementEvents(published);
            }
        };
        _listener.SetMeasurementEventCallback<long>((_, measurement, tags, _) =>
        {
            foreach (var pair in tags)
            {
                if (pair.Key == tag && Equals(pair.Value, value))
                {
                    Interlocked.Add(ref _count, measurement);
                }
            }
        });
        _listener.Start();
    }

    public long Count => Interlocked.Read(ref _count);

    public void Dispose() => _listener.Dispose();
}
