using Google.Protobuf;
using Google.Rpc;
using Grpc.Core;
using RebalanceMesh.Contracts.Planning.V1;

namespace RebalanceMesh.Cli;

/// <summary>Reads request messages and prints responses, for people or (--json) for scripts.</summary>
public static class Output
{
    private static readonly JsonFormatter Formatter = new(JsonFormatter.Settings.Default.WithIndentation());

    public static T ReadMessage<T>(MessageParser<T> parser, string? data, FileInfo? file)
        where T : IMessage<T>
    {
        var json = data ?? (file is not null ? File.ReadAllText(file.FullName) : throw new ArgumentException("Give the message with --data or --file."));
        return parser.ParseJson(json);
    }

    public static void Print(IMessage message, bool json)
    {
        if (json)
        {
            Console.WriteLine(Formatter.Format(message));
            return;
        }

        switch (message)
        {
            case PreviewRebalanceResponse preview:
                PlanPrinter.PrintLegs(preview.Plan, Console.Out);
                foreach (var reason in preview.Plan.Reasons)
                {
                    Console.WriteLine($"  {(reason.Breached ? "BREACH" : "ok    ")} {reason.Message}");
                }

                break;
            case SubmitRebalanceResponse submit:
                PlanPrinter.PrintLegs(submit.Plan, Console.Out);
                break;
            case GetPlanResponse get:
                PlanPrinter.PrintLegs(get.Plan, Console.Out);
                break;
            case RebalanceMesh.Contracts.Pricing.V1.PriceInstrumentsResponse valuations:
                Console.WriteLine($"{"instrument",-14}{"price",16}{"delta",12}{"gamma",12}{"vega",12}{"vol",8}  notes");
                foreach (var v in valuations.Valuations)
                {
                    Console.WriteLine(v.Error.Length > 0
                        ? $"{v.InstrumentId,-14}  error: {v.Error}"
                        : string.Create(System.Globalization.CultureInfo.InvariantCulture,
                            $"{v.InstrumentId,-14}{v.Price.Value,16}{v.Delta,12:G6}{v.Gamma,12:G6}{v.Vega,12:G6}{v.Volatility,8:P1}  {v.Kind.ToString().ToLowerInvariant()}{(v.Stale ? " STALE" : string.Empty)}{(v.Crossed ? " CROSSED" : string.Empty)}"));
                }

                break;
            case RebalanceMesh.Contracts.Pricing.V1.GetQuotesResponse quotes:
                foreach (var q in quotes.Quotes)
                {
                    Console.WriteLine($"{q.InstrumentId,-12} {q.Venue,-8} bid {q.Bid.Value,-14} ask {q.Ask.Value,-14} {q.Timestamp.ToDateTime():O}");
                }

                foreach (var p in quotes.Prices)
                {
                    Console.WriteLine($"{p.InstrumentId,-12} {"best",-8} bid {p.Bid.Value,-14} ask {p.Ask.Value,-14} mid {p.Mid.Value}{(p.Stale ? " STALE" : string.Empty)}{(p.Crossed ? " CROSSED" : string.Empty)}");
                }

                foreach (var q in quotes.Quarantined)
                {
                    Console.WriteLine($"{q.InstrumentId,-12} {q.Venue,-8} bid {q.Bid.Value,-14} ask {q.Ask.Value,-14} {q.Timestamp.ToDateTime():O} QUARANTINED (outlier, not in the book)");
                }

                break;
            case GetPortfolioResponse portfolio:
                Console.WriteLine(Formatter.Format(portfolio));
                if (portfolio.ValuationUnavailableReason.Length > 0)
                {
                    Console.WriteLine($"no valuation: {portfolio.ValuationUnavailableReason}");
                }

                PrintComputedTargets(portfolio.ComputedTargets);
                break;
            case SetPolicyResponse policy:
                Console.WriteLine(Formatter.Format(policy.Policy));
                PrintComputedTargets(policy.ComputedTargets);
                break;
            case WatchPlansResponse update:
                Console.WriteLine($"{update.Plan.UpdatedAt.ToDateTime():HH:mm:ss.fff} {update.Plan.PlanId} {update.Plan.Status} {update.Plan.StatusMessage}");
                break;
            default:
                Console.WriteLine(Formatter.Format(message));
                break;
        }
    }

    /// <summary>A computed model's current targets in one block: what it chose, when, and from what.</summary>
    private static void PrintComputedTargets(ComputedTargets? computed)
    {
        if (computed is null)
        {
            return;
        }

        if (computed.UnavailableReason.Length > 0)
        {
            Console.WriteLine($"computed targets ({computed.Model}): unavailable — {computed.UnavailableReason}");
            return;
        }

        var source = computed.CovarianceGiven ? "the policy's covariance" : $"{computed.Observations} daily returns (lookback {computed.LookbackDays} days)";
        Console.WriteLine($"computed targets ({computed.Model}), {computed.ComputedAt.ToDateTime():u}, from {source}:");
        foreach (var target in computed.Targets)
        {
            var expected = computed.ExpectedReturns.TryGetValue(target.InstrumentId, out var mu) ? string.Create(System.Globalization.CultureInfo.InvariantCulture, $"  expected return {mu:P2}") : string.Empty;
            Console.WriteLine(string.Create(System.Globalization.CultureInfo.InvariantCulture, $"  {target.InstrumentId,-12} {target.Weight,8:P2}{expected}"));
        }

        foreach (var reason in computed.Reasons)
        {
            Console.WriteLine($"  {reason.Message}");
        }
    }

    /// <summary>Runs a unary call and prints its response; a gRPC error is printed with its field violations (exit code 2).</summary>
    public static async Task<int> CallAsync(Func<Task<IMessage>> call, bool json)
    {
        try
        {
            Print(await call(), json);
            return 0;
        }
        catch (RpcException ex)
        {
            PrintError(ex);
            return 2;
        }
    }

    /// <summary>
    /// Prints every message of a server stream until it ends, or until <paramref name="limit"/> messages (0: no limit);
    /// a cancelled call (Ctrl+C) ends quietly, any other gRPC error is printed (exit code 2).
    /// </summary>
    public static async Task<int> StreamAsync<T>(AsyncServerStreamingCall<T> call, Action<T> print, int limit, CancellationToken cancellationToken)
    {
        using (call)
        {
            try
            {
                var seen = 0;
                await foreach (var message in call.ResponseStream.ReadAllAsync(cancellationToken))
                {
                    print(message);
                    if (limit > 0 && ++seen >= limit)
                    {
                        break;
                    }
                }

                return 0;
            }
            catch (RpcException ex) when (ex.StatusCode != StatusCode.Cancelled)
            {
                PrintError(ex);
                return 2;
            }
        }
    }

    public static void PrintError(RpcException ex)
    {
        Console.Error.WriteLine($"{ex.StatusCode}: {ex.Status.Detail}");
        var status = ex.GetRpcStatus();
        var badRequest = status?.GetDetail<BadRequest>();
        foreach (var violation in badRequest?.FieldViolations ?? [])
        {
            Console.Error.WriteLine($"  {violation.Field}: {violation.Description}");
        }
    }
}
