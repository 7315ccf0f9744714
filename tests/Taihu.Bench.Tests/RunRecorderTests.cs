using Taihu.Bench.Measurement;

namespace Taihu.Bench.Tests;

public class RunRecorderTests
{
    private const long Frequency = 1_000_000; // microsecond ticks

    private static RunRecorder Window(int copies = 1)
    {
        var recorder = new RunRecorder(Frequency, copies);
        recorder.StartWindow(1_000);
        recorder.EndWindow(2_000);
        return recorder;
    }

    [Fact]
    public void Only_messages_sent_inside_the_window_count()
    {
        var recorder = Window();
        recorder.Sent(500);   // warm-up
        recorder.Sent(1_000); // first in window
        recorder.Sent(1_999); // last in window
        recorder.Sent(2_000); // after
        Assert.Equal(4, recorder.SentTotal);
        Assert.Equal(2, recorder.SentInWindow);
    }

    [Fact]
    public void Lost_is_expected_copies_minus_received()
    {
        var recorder = Window(copies: 3);
        recorder.Sent(1_100);
        recorder.Sent(1_200);
        Assert.Equal(6, recorder.Expected);
        recorder.Received(1_100, 1_150);
        recorder.Received(1_100, 1_160);
        recorder.Received(1_200, 1_250);
        recorder.Received(500, 1_300); // sent during warm-up: not counted against the window
        Assert.Equal(3, recorder.ReceivedInWindow);
        Assert.Equal(4, recorder.ReceivedTotal);
        Assert.Equal(3, recorder.Lost);
        Assert.Equal(0, recorder.Extra);
    }

    [Fact]
    public void Duplicates_show_as_extra_not_as_negative_loss()
    {
        var recorder = Window();
        recorder.Sent(1_100);
        recorder.Received(1_100, 1_200);
        recorder.Received(1_100, 1_300);
        Assert.Equal(0, recorder.Lost);
        Assert.Equal(1, recorder.Extra);
    }

    [Fact]
    public void Percentiles_come_from_the_recorded_latencies()
    {
        var recorder = new RunRecorder(Frequency, 1);
        recorder.StartWindow(0);
        recorder.EndWindow(long.MaxValue);
        // 1..1000 ms, one sample each.
        for (var ms = 1; ms <= 1000; ms++)
        {
            recorder.Sent(0);
            recorder.Received(0, ms * 1000L);
        }

        Assert.Equal(1000, recorder.LatencySamples);
        Assert.InRange(recorder.LatencyPercentileMs(50), 499, 501);
        Assert.InRange(recorder.LatencyPercentileMs(99), 989, 991);
        Assert.InRange(recorder.LatencyPercentileMs(99.9), 998, 1000.5);
        Assert.InRange(recorder.LatencyMaxMs, 999, 1000.5);
    }

    [Fact]
    public void Counting_is_safe_from_many_threads()
    {
        var recorder = Window();
        Parallel.For(0, 8, _ =>
        {
            for (var i = 0; i < 10_000; i++)
            {
                recorder.Sent(1_500);
                recorder.Received(1_500, 1_600);
            }
        });
        Assert.Equal(80_000, recorder.SentInWindow);
        Assert.Equal(80_000, recorder.ReceivedInWindow);
        Assert.Equal(0, recorder.Lost);
    }
}
