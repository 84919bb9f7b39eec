using System.Runtime.CompilerServices;
using MathNet.Numerics.LinearAlgebra;

namespace RebalanceMesh.Pricing.Core.Feeds;

/// <summary>One simulated instrument.</summary>
/// <param name="AnnualDrift">Expected log-return per year.</param>
/// <param name="AnnualVolatility">Volatility per year in the calm regime.</param>
public sealed record SimulatedInstrument(string InstrumentId, double InitialPrice, double AnnualDrift, double AnnualVolatility);

/// <summary>Settings of the simulated market.</summary>
public sealed class SimulatedMarketOptions
{
    public List<SimulatedInstrument> Instruments { get; set; } =
    [
        new("BTC", 60_000, 0.10, 0.60),
        new("ETH", 3_000, 0.10, 0.75),
        new("SOL", 150, 0.10, 0.95),
        new("USDC", 1, 0, 0.002),
    ];

    /// <summary>Pairwise correlation of the instruments' diffusions (one-factor model).</summary>
    public double Correlation { get; set; } = 0.6;

    /// <summary>Seed of the generator; the same seed reproduces the same path.</summary>
    public int Seed { get; set; } = 42;

    /// <summary>Simulated years per step: 1/252 makes each step one business day.</summary>
    public double YearsPerStep { get; set; } = 1.0 / 252;

    /// <summary>Steps per second of wall-clock time when streaming.</summary>
    public double StepsPerSecond { get; set; } = 2;

    /// <summary>History seeded before streaming, in business days (one step each).</summary>
    public int HistoryDays { get; set; } = 750;

    /// <summary>Expected jumps per year per instrument.</summary>
    public double JumpsPerYear { get; set; } = 2;

    /// <summary>Mean log size of a jump (negative: crashes).</summary>
    public double JumpMean { get; set; } = -0.05;

    /// <summary>Standard deviation of the log size of a jump.</summary>
    public double JumpStdDev { get; set; } = 0.04;

    /// <summary>Volatility multiplier of the stressed regime.</summary>
    public double StressedVolatilityMultiplier { get; set; } = 2.5;

    /// <summary>Probability per year of switching from calm to stressed; stressed lasts a tenth as long on average.</summary>
    public double StressSwitchesPerYear { get; set; } = 1;
}

/// <summary>
/// Correlated geometric Brownian motion with Merton jumps and a two-state volatility regime, driven by a seeded
/// generator so every run with the same seed produces the same prices.
/// </summary>
public sealed class SimulatedMarket
{
    private readonly SimulatedMarketOptions _options;
    private readonly Random _random;
    private readonly Matrix<double> _cholesky;
    private readonly double[] _prices;
    private bool _stressed;

    public SimulatedMarket(SimulatedMarketOptions options)
    {
        if (options.Instruments.Count == 0)
        {
            throw new ArgumentException("The simulated market needs at least one instrument.", nameof(options));
        }

        if (options.Correlation is <= -0.99 or >= 0.999)
        {
            throw new ArgumentOutOfRangeException(nameof(options), "Correlation must be in (-0.99, 0.999).");
        }

        _options = options;
        _random = new Random(options.Seed);
        var n = options.Instruments.Count;
        var correlation = Matrix<double>.Build.Dense(n, n, (i, j) => i == j ? 1.0 : options.Correlation);
        _cholesky = correlation.Cholesky().Factor;
        _prices = options.Instruments.Select(i => i.InitialPrice).ToArray();
    }

    public IReadOnlyList<string> Instruments => _options.Instruments.Select(i => i.InstrumentId).ToArray();

    public IReadOnlyList<double> Prices => _prices;

    public bool Stressed => _stressed;

    /// <summary>Advances one step of <see cref="SimulatedMarketOptions.YearsPerStep"/> and returns the new prices.</summary>
    public IReadOnlyList<double> Step()
    {
        var dt = _options.YearsPerStep;
        var n = _prices.Length;
        var switchProbability = _options.StressSwitchesPerYear * dt * (_stressed ? 10 : 1);
        if (_random.NextDouble() < switchProbability)
        {
            _stressed = !_stressed;
        }

        var z = Vector<double>.Build.Dense(n, _ => NextGaussian());
        var correlated = _cholesky * z;
        var multiplier = _stressed ? _options.StressedVolatilityMultiplier : 1.0;
        for (var i = 0; i < n; i++)
        {
            var instrument = _options.Instruments[i];
            var sigma = instrument.AnnualVolatility * multiplier;
            var logReturn = ((instrument.AnnualDrift - (0.5 * sigma * sigma)) * dt) + (sigma * Math.Sqrt(dt) * correlated[i]);
            if (_random.NextDouble() < _options.JumpsPerYear * dt)
            {
                logReturn += _options.JumpMean + (_options.JumpStdDev * NextGaussian());
            }

            _prices[i] *= Math.Exp(logReturn);
        }

        return _prices;
    }

    private double NextGaussian()
    {
        // Box–Muller on the seeded generator.
        var u1 = 1.0 - _random.NextDouble();
        var u2 = _random.NextDouble();
        return Math.Sqrt(-2.0 * Math.Log(u1)) * Math.Cos(2.0 * Math.PI * u2);
    }
}

/// <summary>Feeds the simulated market: its first steps become history, later steps stream live.</summary>
public sealed class SimulatedMarketFeed(SimulatedMarketOptions options, IReadOnlyList<VenueQuoteStyle> venues, TimeProvider time) : IQuoteFeed
{
    private readonly SimulatedMarket _market = new(options);
    private bool _historyTaken;

    public string Name => "simulated";

    public IReadOnlyList<string> Instruments => _market.Instruments;

    public IReadOnlyDictionary<string, IReadOnlyList<HistoricalClose>> History(DateOnly today)
    {
        if (_historyTaken)
        {
            throw new InvalidOperationException("History is generated once, before streaming.");
        }

        _historyTaken = true;
        var days = BusinessCalendar.WeekdaysBefore(today, options.HistoryDays);
        var series = _market.Instruments.ToDictionary(i => i, _ => new List<HistoricalClose>(days.Count), StringComparer.Ordinal);
        foreach (var day in days)
        {
            var prices = _market.Step();
            for (var i = 0; i < prices.Count; i++)
            {
                series[_market.Instruments[i]].Add(new HistoricalClose(day, prices[i]));
            }
        }

        return series.ToDictionary(kv => kv.Key, kv => (IReadOnlyList<HistoricalClose>)kv.Value, StringComparer.Ordinal);
    }

    public async IAsyncEnumerable<IReadOnlyList<Tick>> StreamAsync([EnumeratorCancellation] CancellationToken cancellationToken)
    {
        var interval = TimeSpan.FromSeconds(1.0 / Math.Max(options.StepsPerSecond, 0.001));
        while (!cancellationToken.IsCancellationRequested)
        {
            var prices = _market.Step();
            var now = time.GetUtcNow();
            var batch = new List<Tick>(prices.Count * venues.Count);
            for (var i = 0; i < prices.Count; i++)
            {
                batch.AddRange(VenueQuotes.Around(_market.Instruments[i], prices[i], venues, now));
            }

            yield return batch;
            await Task.Delay(interval, time, cancellationToken).ConfigureAwait(false);
        }
    }
}
