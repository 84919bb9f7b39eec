using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using RebalanceMesh.Planning.Core;

namespace RebalanceMesh.Cli;

/// <summary>
/// `rmesh backtest`: replays buy-and-hold, a calendar and the band policy over daily closes with the planning code
/// (Planning.Core's <see cref="Backtester"/>), prints the statistics and draws the net values as an SVG chart.
/// Offline: it needs no running mesh.
/// </summary>
public static class BacktestCommand
{
    public static Command Create(Option<string?> repoOption, Option<bool> jsonOption)
    {
        var dataOption = new Option<FileInfo?>("--prices") { Description = "CSV of daily closes: a day column, then one column per instrument (default: data/eustockmarkets.csv)." };
        var targetsOption = new Option<string?>("--targets") { Description = "Target weights, e.g. DAX=0.24,SMI=0.24,CAC=0.24,FTSE=0.24 (default: equal weights summing to 0.96)." };
        var bandOption = new Option<double>("--band") { Description = "Absolute band (weight units).", DefaultValueFactory = _ => 0.05 };
        var costOption = new Option<double>("--cost-bps") { Description = "Trading cost in basis points of notional.", DefaultValueFactory = _ => 10 };
        var calendarOption = new Option<int>("--calendar-days") { Description = "Trading days between calendar rebalances.", DefaultValueFactory = _ => 21 };
        var capitalOption = new Option<decimal>("--capital") { Description = "Starting cash.", DefaultValueFactory = _ => 1_000_000m };
        var svgOption = new Option<FileInfo?>("--svg") { Description = "Where to write the chart (default: .rmesh/backtest.svg)." };
        var modelOption = new Option<string>("--model")
        {
            Description = "Target model, re-estimated daily over the trailing history: fixed, equal-weight, inverse-volatility, risk-parity, minimum-variance, maximum-sharpe, mean-variance.",
            DefaultValueFactory = _ => "fixed",
        };
        var lookbackOption = new Option<int>("--lookback") { Description = "Days of history for estimated covariance and returns (computed models, the optimiser).", DefaultValueFactory = _ => 250 };
        var optimizerOption = new Option<bool>("--optimizer") { Description = "Trade with the cost-aware optimiser (tracking error + fees, half-spread and impact) instead of straight to target." };
        var loanOption = new Option<decimal>("--loan-ltv") { Description = "Open a loan on the first day: half the capital buys the first instrument as collateral and this loan-to-value is borrowed; adds a strategy with the liquidation guard.", DefaultValueFactory = _ => 0m };
        var command = new Command("backtest", "Replay buy-and-hold, a calendar and the band policy over daily closes with the planning pipeline; print statistics and write an SVG chart.")
        {
            dataOption, targetsOption, bandOption, costOption, calendarOption, capitalOption, svgOption, modelOption, lookbackOption, optimizerOption, loanOption,
        };
        command.SetAction(async (parse, cancellationToken) =>
        {
            var root = Repo.Root(parse.GetValue(repoOption));
            var file = parse.GetValue(dataOption)?.FullName ?? Path.Combine(root, "data", "eustockmarkets.csv");
            var (instruments, closes) = ReadCloses(file);
            var targets = ParseTargets(parse.GetValue(targetsOption), instruments);
            var costBps = parse.GetValue(costOption);
            var optimizer = parse.GetValue(optimizerOption)
                ? new OptimizerPolicy(OptimizerObjective.TrackingError, 1, costBps, 1, new Dictionary<string, decimal>(), null, null, new Dictionary<string, (double, double)>(), 0, [])
                : null;
            var policy = TargetPolicy.Of(targets, TradeRules.Default with { EstimatedCostBps = costBps },
                new DriftBands(parse.GetValue(bandOption)),
                new TargetModelSpec(ParseModel(parse.GetValue(modelOption) ?? "fixed"), parse.GetValue(lookbackOption)),
                optimizer);
            var ltv = parse.GetValue(loanOption);
            var loan = ltv > 0 ? new BacktestLoan(targets.Keys.First(), 0.5m, ltv, 0.8) : null;
            List<BacktestStrategy> strategies =
            [
                new BacktestStrategy("buy and hold", BacktestTrigger.Never, policy, Loan: loan),
                new BacktestStrategy($"calendar ({parse.GetValue(calendarOption)} days)", BacktestTrigger.Calendar, policy, parse.GetValue(calendarOption), Loan: loan),
                new BacktestStrategy($"bands (±{parse.GetValue(bandOption):P0})", BacktestTrigger.Bands, policy, Loan: loan),
            ];
            if (loan is not null)
            {
                strategies.Add(new BacktestStrategy("bands + guard", BacktestTrigger.Bands, policy.With(new HealthFactorBand(1.6, 1.3, 0, 1.1)), Loan: loan));
            }

            var ordered = targets.Keys.ToArray();
            var results = await Backtester.RunAsync(ordered, closes.Select(row => ordered.Select(id => row[Array.IndexOf(instruments, id)]).ToArray()).ToArray(),
                parse.GetValue(capitalOption), strategies, cancellationToken);

            var svg = parse.GetValue(svgOption)?.FullName ?? Path.Combine(Repo.StateDir(root), "backtest.svg");
            Directory.CreateDirectory(Path.GetDirectoryName(svg)!);
            File.WriteAllText(svg, Chart(results, targets.Keys.ToArray(), $"{Path.GetFileName(file)}: {string.Join(", ", targets.Select(t => string.Create(CultureInfo.InvariantCulture, $"{t.Key} {t.Value:P0}")))}; cost {parse.GetValue(costOption)} bp"));
            if (parse.GetValue(jsonOption))
            {
                Console.WriteLine(JsonSerializer.Serialize(results.Select(r => new
                {
                    r.Name, r.Rebalances, r.Costs, r.AnnualReturn, r.AnnualVolatility, r.Sharpe, r.MaxDrawdown, r.Turnover, r.TrackingError, FinalNetValue = r.NetValues[^1],
                    r.Liquidations, r.LiquidationPenalty, MinHealthFactor = double.IsFinite(r.MinHealthFactor) ? r.MinHealthFactor : (double?)null, r.GuardActions,
                })));
            }
            else
            {
                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{results[0].NetValues.Count} days of {string.Join(", ", targets.Keys)} from {file} ({closes.Count - results[0].NetValues.Count} days of warm-up), model {policy.ModelSpec.Model}{(optimizer is null ? string.Empty : ", cost-aware optimiser")}"));
                Console.WriteLine($"{"strategy",-22} {"final",14} {"return/y",9} {"vol/y",7} {"Sharpe",7} {"max DD",7} {"rebal.",6} {"turnover",9} {"costs",10} {"TE/y",6}");
                foreach (var r in results)
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{r.Name,-22} {r.NetValues[^1],14:N0} {r.AnnualReturn,9:P2} {r.AnnualVolatility,7:P1} {r.Sharpe,7:F2} {r.MaxDrawdown,7:P1} {r.Rebalances,6} {r.Turnover,9:F2} {r.Costs,10:N0} {r.TrackingError,6:P2}"));
                }

                foreach (var r in results.Where(r => double.IsFinite(r.MinHealthFactor)))
                {
                    Console.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{r.Name,-22} loan: lowest health factor {r.MinHealthFactor:F3}, {r.Liquidations} liquidations ({r.LiquidationPenalty:N0} lost to the bonus), guard acted on {r.GuardActions} days"));
                }

                Console.WriteLine($"chart: {svg}");
            }

            return 0;
        });
        return command;
    }

    private static TargetModel ParseModel(string text) => text.ToLowerInvariant() switch
    {
        "fixed" => TargetModel.FixedWeights,
        "equal-weight" => TargetModel.EqualWeight,
        "inverse-volatility" => TargetModel.InverseVolatility,
        "risk-parity" => TargetModel.RiskParity,
        "minimum-variance" => TargetModel.MinimumVariance,
        "maximum-sharpe" => TargetModel.MaximumSharpe,
        "mean-variance" => TargetModel.MeanVariance,
        _ => throw new ArgumentException($"--model: '{text}' is not one of fixed, equal-weight, inverse-volatility, risk-parity, minimum-variance, maximum-sharpe, mean-variance."),
    };

    private static (string[] Instruments, IReadOnlyList<double[]> Closes) ReadCloses(string file)
    {
        var lines = File.ReadAllLines(file).Where(l => l.Length > 0).ToArray();
        var header = lines[0].Split(',');
        var instruments = header.Skip(1).ToArray();
        var closes = lines.Skip(1).Select(l => l.Split(',').Skip(1).Select(v => double.Parse(v, CultureInfo.InvariantCulture)).ToArray()).ToArray();
        return (instruments, closes);
    }

    private static Dictionary<string, double> ParseTargets(string? text, string[] instruments)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return instruments.ToDictionary(id => id, _ => 0.96 / instruments.Length, StringComparer.Ordinal);
        }

        var targets = new Dictionary<string, double>(StringComparer.Ordinal);
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var pieces = part.Split('=');
            if (pieces.Length != 2 || !instruments.Contains(pieces[0]) || !double.TryParse(pieces[1], CultureInfo.InvariantCulture, out var weight) || weight < 0)
            {
                throw new ArgumentException($"--targets: '{part}' is not INSTRUMENT=WEIGHT for one of {string.Join(", ", instruments)}.");
            }

            targets[pieces[0]] = weight;
        }

        return targets.Values.Sum() <= 1 + 1e-9 ? targets : throw new ArgumentException("--targets: the weights sum to more than 1.");
    }

    /// <summary>
    /// An SVG chart: above, each strategy's net value rebased to 100; below, the weights of the last strategy (the band
    /// policy) per instrument, with its targets' sum as cash's complement.
    /// </summary>
    public static string Chart(IReadOnlyList<BacktestResult> results, IReadOnlyList<string> instruments, string title)
    {
        const double width = 960, height = 480, left = 70, right = 20, top = 40, bottom = 50, weightsHeight = 220;
        string[] colors = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd"];
        var series = results.Select(r => r.NetValues.Select(v => (double)(v / r.NetValues[0]) * 100).ToArray()).ToArray();
        var days = series.Max(s => s.Length);
        var min = series.Min(s => s.Min());
        var max = series.Max(s => s.Max());
        double X(int day) => left + ((width - left - right) * day / Math.Max(days - 1, 1));
        double Y(double value) => top + ((height - top - bottom) * (max - value) / Math.Max(max - min, 1e-9));
        var svg = new StringBuilder();
        svg.Append(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height + weightsHeight}\" viewBox=\"0 0 {width} {height + weightsHeight}\" font-family=\"sans-serif\" font-size=\"12\">\n");
        svg.Append(CultureInfo.InvariantCulture, $"<rect width=\"{width}\" height=\"{height + weightsHeight}\" fill=\"white\"/>\n<text x=\"{left}\" y=\"24\" font-size=\"14\">{Escape(title)}</text>\n");
        for (var i = 0; i <= 5; i++)
        {
            var value = min + ((max - min) * i / 5);
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" x2=\"{width - right}\" y1=\"{Y(value):F1}\" y2=\"{Y(value):F1}\" stroke=\"#ddd\"/><text x=\"{left - 8}\" y=\"{Y(value) + 4:F1}\" text-anchor=\"end\">{value:F0}</text>\n");
        }

        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{(width + left) / 2}\" y=\"{height - 12}\" text-anchor=\"middle\">trading day (0 … {days - 1}); net value rebased to 100</text>\n");
        for (var s = 0; s < series.Length; s++)
        {
            var points = string.Join(' ', series[s].Select((v, day) => string.Create(CultureInfo.InvariantCulture, $"{X(day):F1},{Y(v):F1}")));
            svg.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{colors[s % colors.Length]}\" stroke-width=\"1.5\" points=\"{points}\"/>\n");
            svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{left + 10}\" y=\"{top + 6 + (s * 18)}\" width=\"12\" height=\"3\" fill=\"{colors[s % colors.Length]}\"/><text x=\"{left + 28}\" y=\"{top + 11 + (s * 18)}\">{Escape(results[s].Name)}</text>\n");
        }

        // Weights of the last strategy, 0 … max weight, below the value chart.
        var last = results[^1];
        var maxWeight = Math.Max(last.Weights.Max(w => w.DefaultIfEmpty(0).Max()), 1e-9);
        double WeightsY(double weight) => height + 20 + ((weightsHeight - 50) * (1 - (weight / maxWeight)));
        svg.Append(CultureInfo.InvariantCulture, $"<text x=\"{left}\" y=\"{height + 12}\" font-size=\"13\">weights: {Escape(last.Name)}</text>\n");
        for (var i = 0; i <= 4; i++)
        {
            var weight = maxWeight * i / 4;
            svg.Append(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" x2=\"{width - right}\" y1=\"{WeightsY(weight):F1}\" y2=\"{WeightsY(weight):F1}\" stroke=\"#eee\"/><text x=\"{left - 8}\" y=\"{WeightsY(weight) + 4:F1}\" text-anchor=\"end\">{weight:P0}</text>\n");
        }

        for (var k = 0; k < instruments.Count; k++)
        {
            var color = colors[(k + series.Length) % colors.Length];
            var points = string.Join(' ', last.Weights.Select((w, day) => string.Create(CultureInfo.InvariantCulture, $"{X(day):F1},{WeightsY(w[k]):F1}")));
            svg.Append(CultureInfo.InvariantCulture, $"<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1\" points=\"{points}\"/>\n");
            svg.Append(CultureInfo.InvariantCulture, $"<rect x=\"{left + 10 + (k * 90)}\" y=\"{height + 24}\" width=\"12\" height=\"3\" fill=\"{color}\"/><text x=\"{left + 28 + (k * 90)}\" y=\"{height + 29}\">{Escape(instruments[k])}</text>\n");
        }

        svg.Append("</svg>\n");
        return svg.ToString();
    }

    private static string Escape(string text) => System.Security.SecurityElement.Escape(text) ?? string.Empty;
}
