using RebalanceMesh.Domain;

namespace RebalanceMesh.Risk.Core;

/// <summary>Daily log returns, one row per day (oldest first), one column per instrument.</summary>
public sealed class ReturnMatrix
{
    public ReturnMatrix(IReadOnlyList<string> instruments, double[,] values, IReadOnlyList<int>? closeDays = null)
    {
        if (values.GetLength(1) != instruments.Count)
        {
            throw new ArgumentException("One column per instrument is required.", nameof(values));
        }

        Instruments = instruments;
        Values = values;
        CloseDays = closeDays;
    }

    /// <summary>Day numbers (days since 1970-01-01) of the closes: row t is the return from CloseDays[t] to CloseDays[t + 1]. Null when unknown.</summary>
    public IReadOnlyList<int>? CloseDays { get; }

    public IReadOnlyList<string> Instruments { get; }

    /// <summary>Returns: [day, instrument].</summary>
    public double[,] Values { get; }

    public int Days => Values.GetLength(0);

    /// <summary>
    /// e^r − 1 per [day, instrument]: what one unit of currency held in each instrument gained each day. Computed once
    /// and shared by every historical revaluation of this matrix (a trade's before and after).
    /// </summary>
    public double[,] Growth
    {
        get
        {
            if (_growth is { } growth)
            {
                return growth;
            }

            growth = new double[Days, Count];
            if (growth.Length > 0)
            {
                var returns = System.Runtime.InteropServices.MemoryMarshal.CreateReadOnlySpan(ref Values[0, 0], Values.Length);
                var gains = System.Runtime.InteropServices.MemoryMarshal.CreateSpan(ref growth[0, 0], growth.Length);
                System.Numerics.Tensors.TensorPrimitives.Exp(returns, gains);
                System.Numerics.Tensors.TensorPrimitives.Subtract(gains, 1.0, gains);
            }

            return _growth = growth;
        }
    }

    private double[,]? _growth;

    public int Count => Values.GetLength(1);

    /// <summary>
    /// Aligns close series on the days every instrument has, and takes log returns of consecutive common days.
    /// Keeps at most the last <paramref name="lookbackDays"/> returns.
    /// </summary>
    public static ReturnMatrix FromCloses(IReadOnlyList<string> instruments, IReadOnlyList<IReadOnlyList<(int Day, double Close)>> closes, int lookbackDays)
    {
        if (instruments.Count != closes.Count)
        {
            throw new ArgumentException("One close series per instrument is required.", nameof(closes));
        }

        HashSet<int>? common = null;
        for (var i = 0; i < closes.Count; i++)
        {
            var days = closes[i].Where(c => c.Close > 0 && double.IsFinite(c.Close)).Select(c => c.Day);
            common = common is null ? [.. days] : [.. common.Intersect(days)];
        }

        var ordered = (common ?? []).Order().ToArray();
        if (ordered.Length < 3)
        {
            var missing = instruments.Where((_, i) => closes[i].Count < 3).ToArray();
            var detail = missing.Length > 0 ? "no price history for " + string.Join(", ", missing) : "fewer than 3 common days of history";
            throw new DomainException(DomainErrorKind.FailedPrecondition, $"Not enough price history: {detail}.");
        }

        var keep = ordered.Skip(Math.Max(0, ordered.Length - lookbackDays - 1)).ToArray();
        var lookup = closes.Select(series =>
        {
            var byDay = new Dictionary<int, double>(series.Count);
            foreach (var (day, close) in series)
            {
                byDay[day] = close; // the last close of a day wins
            }

            return byDay;
        }).ToArray();
        var values = new double[keep.Length - 1, instruments.Count];
        for (var j = 0; j < instruments.Count; j++)
        {
            for (var t = 1; t < keep.Length; t++)
            {
                values[t - 1, j] = Math.Log(lookup[j][keep[t]] / lookup[j][keep[t - 1]]);
            }
        }

        return new ReturnMatrix(instruments, values, keep);
    }
}
