namespace RebalanceMesh.Execution.Core.Runs;

/// <summary>A leg's slices: the cumulative quantity due after each (the last is the whole leg) and the wait between them.</summary>
public sealed record Slices(IReadOnlyList<decimal> Cumulative, TimeSpan Interval);

/// <summary>
/// How a trade leg is cut into slices over time, and whether each slice rests as a maker first. One small class per
/// execution model, as LEAN keeps them.
/// </summary>
public interface ILegSchedule
{
    /// <param name="displayed">Liquidity the venues display on the leg's side at its start.</param>
    Slices Slice(decimal quantity, decimal displayed);

    /// <summary>How long each slice rests a post-only order before taking; zero: it takes at once.</summary>
    TimeSpan RestFor { get; }
}

/// <summary>The whole leg at once.</summary>
public sealed class ImmediateSchedule : ILegSchedule
{
    public Slices Slice(decimal quantity, decimal displayed) => new([quantity], TimeSpan.Zero);

    public TimeSpan RestFor => TimeSpan.Zero;
}

/// <summary>Equal slices at equal intervals over a duration (<see cref="TwapSchedule"/>).</summary>
public sealed class TwapLegSchedule(int slices, TimeSpan duration) : ILegSchedule
{
    public Slices Slice(decimal quantity, decimal displayed)
    {
        var cumulative = TwapSchedule.Cumulative(quantity, slices);
        return new(cumulative, cumulative.Count <= 1 ? TimeSpan.Zero : duration / cumulative.Count);
    }

    public TimeSpan RestFor => TimeSpan.Zero;
}

/// <summary>
/// A share of the displayed liquidity per slice, one slice per interval (<see cref="PovSchedule"/>); with nothing
/// displayed, <paramref name="otherwise"/>'s slices.
/// </summary>
public sealed class PovLegSchedule(double rate, TimeSpan interval, ILegSchedule otherwise) : ILegSchedule
{
    public Slices Slice(decimal quantity, decimal displayed)
    {
        if (displayed <= 0)
        {
            return otherwise.Slice(quantity, displayed);
        }

        var cumulative = PovSchedule.Cumulative(quantity, displayed, rate);
        return new(cumulative, cumulative.Count <= 1 ? TimeSpan.Zero : interval);
    }

    public TimeSpan RestFor => TimeSpan.Zero;
}

/// <summary>Another schedule's slices, each first resting a post-only order at the near touch for a while.</summary>
public sealed class MakerFirstSchedule(ILegSchedule inner, TimeSpan wait) : ILegSchedule
{
    public Slices Slice(decimal quantity, decimal displayed) => inner.Slice(quantity, displayed);

    public TimeSpan RestFor => wait;
}

public static class LegSchedules
{
    /// <summary>
    /// The schedule of a plan's style: POV when it has a rate (TWAP or immediate when nothing is displayed), else TWAP
    /// when it has slices, else immediate; maker first around it when it rests.
    /// </summary>
    public static ILegSchedule For(SliceStyle style)
    {
        ILegSchedule timed = style.TwapSlices > 1 ? new TwapLegSchedule(style.TwapSlices, style.TwapDuration) : new ImmediateSchedule();
        var schedule = style.PovRate > 0 ? new PovLegSchedule(style.PovRate, style.PovInterval, timed) : timed;
        return style.MakerWait > TimeSpan.Zero ? new MakerFirstSchedule(schedule, style.MakerWait) : schedule;
    }
}
