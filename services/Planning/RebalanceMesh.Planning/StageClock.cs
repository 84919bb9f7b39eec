using System.Diagnostics;

namespace RebalanceMesh.Planning;

/// <summary>Times the stages of one piece of work onto its span: each <see cref="Lap"/> tags the milliseconds since the previous lap (or the start).</summary>
public sealed class StageClock(Activity? span)
{
    private long _from = Stopwatch.GetTimestamp();

    public void Lap(string tag)
    {
        span?.SetTag(tag, Stopwatch.GetElapsedTime(_from).TotalMilliseconds);
        _from = Stopwatch.GetTimestamp();
    }
}
