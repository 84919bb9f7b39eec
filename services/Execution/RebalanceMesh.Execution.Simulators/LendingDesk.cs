using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.EventBus;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.MarketState;
using LendingCollateral = RebalanceMesh.Contracts.Execution.V1.LendingCollateral;

namespace RebalanceMesh.Execution.Simulators;

/// <summary>
/// The simulated lending venues' desk: accounts in Redis, loan legs applied once each (operation id = plan and leg)
/// under optimistic concurrency with liquidations, and liquidation of every account whose health factor falls below
/// 1 as quotes move (each call reported on execution.reports through the outbox so planning's portfolio follows the
/// venue). The rules
/// are <see cref="LendingVenue"/>'s; prices are the consolidated mids of market state, the base currency at 1.
/// </summary>
public sealed class LendingDesk(SimulatedAccountStore store, MarketStateStore market, ReportOutbox outbox, IOptions<SimulatorOptions> options, TimeProvider time, ILogger<LendingDesk> logger)
{
    private static readonly Meter Meter = new("RebalanceMesh.Execution.Lending");
    private static readonly Counter<long> Operations = Meter.CreateCounter<long>("rebalancemesh.execution.lending_operations", description: "Loan-leg operations on lending venues, by operation and outcome.");
    private static readonly Counter<long> Liquidations = Meter.CreateCounter<long>("rebalancemesh.execution.liquidations", description: "Liquidation calls lending venues made, by venue.");


    public LendingVenueSpec? Venue(string venueId) => options.Value.LendingVenues.FirstOrDefault(v => v.VenueId == venueId);

    /// <summary>Validates and stores an account opened by a client on a lending venue.</summary>
    public async Task<LendingAccount> OpenAsync(LendingAccount account)
    {
        var check = new RequestValidator();
        var venue = check.RequireIdentifier(account.Venue, "account.venue") ? Venue(account.Venue) : null;
        check.Require(account.Venue.Length == 0 || venue is not null, "account.venue", "is not a lending venue: " + string.Join(", ", options.Value.LendingVenues.Select(v => v.VenueId)));
        check.RequireIdentifier(account.PortfolioId, "account.portfolio_id");
        check.RequireIdentifier(account.LoanId, "account.loan_id");
        check.RequireCurrency(account.BaseCurrency, "account.base_currency");
        check.RequireCount(account.Collateral.Count, 20, "account.collateral");
        var assets = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < account.Collateral.Count && i < 20; i++)
        {
            var at = $"account.collateral[{i}]";
            if (check.RequireIdentifier(account.Collateral[i].Asset, at + ".asset"))
            {
                check.Require(assets.Add(account.Collateral[i].Asset), at + ".asset", "appears more than once");
                check.Require(venue is null || venue.Terms(account.Collateral[i].Asset) is not null, at + ".asset", "is not accepted as collateral by the venue");
            }

            check.RequireDecimal(account.Collateral[i].Quantity, at + ".quantity", ValidationExtensions.DecimalRule.NonNegative, out _);
        }

        check.RequireIdentifier(account.DebtAsset, "account.debt_asset");
        check.RequireDecimal(account.Debt, "account.debt", ValidationExtensions.DecimalRule.NonNegative, out _);
        check.ThrowIfInvalid();

        var stored = account.Clone();
        stored.HealthFactor = 0;
        stored.Liquidations = 0;
        stored.Version = 1;
        await store.SaveLendingAsync(stored);
        logger.LogInformation("Lending account {Venue}/{PortfolioId}/{LoanId} opened: debt {Debt} {DebtAsset}", stored.Venue, stored.PortfolioId, stored.LoanId, stored.Debt.Value, stored.DebtAsset);
        return await ValuedAsync(stored);
    }

    /// <summary>An account valued at current prices, or null when it does not exist.</summary>
    public async Task<LendingAccount?> GetAsync(string venue, string portfolioId, string loanId)
    {
        var (account, _) = await store.GetLendingAsync(SimulatedAccountStore.LendingKey(venue, portfolioId, loanId));
        return account is null ? null : await ValuedAsync(account);
    }

    /// <summary>
    /// Applies a loan leg on its lending venue once: a redelivered leg returns the recorded outcome. Returns the units
    /// moved (a repayment is capped at the debt), or why the venue refused.
    /// </summary>
    public async Task<VenueOperationResult> ApplyAsync(VenueOperation leg)
    {
        var (operationId, portfolioId) = (leg.OperationId, leg.PortfolioId);
        var operation = leg.Kind switch
        {
            VenueOperationKind.SupplyCollateral => LendingOperation.Supply,
            VenueOperationKind.WithdrawCollateral => LendingOperation.Withdraw,
            VenueOperationKind.Borrow => LendingOperation.Borrow,
            VenueOperationKind.Repay => LendingOperation.Repay,
            _ => throw new ArgumentOutOfRangeException(nameof(leg), leg.Kind, "Not a loan leg."),
        };
        var key = SimulatedAccountStore.LendingKey(leg.Venue, portfolioId, leg.LoanId);
        OperationTry Refuse(string reason)
        {
            Operations.Add(1, new KeyValuePair<string, object?>("operation", operation.ToString()), new KeyValuePair<string, object?>("outcome", "refused"));
            return OperationTry.Refused(reason);
        }

        return await RecordedOperation.RunOnceAsync(
            () => store.GetLendingOperationAsync(operationId),
            outcome => store.RecordLendingOperationAsync(operationId, outcome),
            async () =>
            {
                if (Venue(leg.Venue) is not { } venue)
                {
                    return Refuse($"{leg.Venue} is not a lending venue here");
                }

                var (account, raw) = await store.GetLendingAsync(key);
                if (account is null)
                {
                    return Refuse($"{leg.Venue} has no loan {leg.LoanId} for portfolio {portfolioId}");
                }

                var position = ToDomain(account);
                var prices = await PricesAsync(position);
                if (prices.Missing.Length > 0)
                {
                    return Refuse("no price for " + string.Join(", ", prices.Missing));
                }

                var outcome = LendingVenue.Apply(position, venue, operation, leg.Asset, leg.Quantity, prices.Of);
                if (!outcome.Accepted)
                {
                    return Refuse(outcome.RejectReason);
                }

                if (!await store.TryUpdateLendingAsync(key, raw, ToWire(outcome.Position, account.Version + 1), operationId, RecordedOperation.Format(true, outcome.Quantity, string.Empty)))
                {
                    return OperationTry.Raced;
                }

                Operations.Add(1, new KeyValuePair<string, object?>("operation", operation.ToString()), new KeyValuePair<string, object?>("outcome", "applied"));
                logger.LogInformation("{Venue}: {Operation} {Quantity} {Asset} on loan {LoanId} of {PortfolioId}; health factor {HealthFactor}",
                    leg.Venue, operation, outcome.Quantity, leg.Asset, leg.LoanId, portfolioId, Ratios.ForLog(LendingVenue.HealthFactor(outcome.Position, venue, prices.Of)));
                return OperationTry.Done(outcome.Quantity);
            },
            $"Loan {leg.LoanId} on {leg.Venue} is changing too often; retry.");
    }

    /// <summary>
    /// Liquidates every account holding or owing one of <paramref name="changed"/> whose health factor is below 1.
    /// Each call's report is committed to the outbox with the account it changed, then published on
    /// execution.reports (a crash in between leaves it to <see cref="ReportOutbox"/>).
    /// </summary>
    public async Task LiquidateAsync(IReadOnlySet<string> changed, CancellationToken cancellationToken) =>
        await LiquidationPass.RunAsync(
            await store.GetLendingKeysAsync(changed),
            store.GetLendingAsync,
            account => LiquidationOfAsync(account, changed),
            (key, raw, liquidated) => store.TryUpdateLendingAsync(key, raw, liquidated.After, reports: liquidated.Reports),
            outbox,
            cancellationToken);

    /// <summary>The lending venue's liquidation of an account holding or owing one of <paramref name="changed"/>, or null.</summary>
    private async Task<Liquidated<LendingAccount>?> LiquidationOfAsync(LendingAccount account, IReadOnlySet<string> changed)
    {
        var position = ToDomain(account);
        if (Venue(account.Venue) is not { } venue || !position.Collateral.Keys.Append(position.DebtAsset).Any(changed.Contains))
        {
            return null;
        }

        var prices = await PricesAsync(position);
        if (prices.Missing.Length > 0)
        {
            return null;
        }

        var (after, calls) = LendingVenue.Liquidate(position, venue, prices.Of);
        if (calls.Count == 0)
        {
            return null;
        }

        var reports = calls.Select((call, i) => LiquidationReport(account, position.DebtAsset, call, account.Liquidations + i + 1)).ToArray();
        return new Liquidated<LendingAccount>(
            ToWire(after, account.Version + 1),
            reports,
            "liquidate",
            [new("execution.venue", account.Venue), new("execution.loan_id", account.LoanId), new("execution.liquidation_calls", calls.Count)],
            () =>
            {
                Liquidations.Add(calls.Count, new KeyValuePair<string, object?>("venue", account.Venue));
                foreach (var call in calls)
                {
                    logger.LogWarning("{Venue} liquidated loan {LoanId} of {PortfolioId}: seized {Seized} {Asset}, repaid {Repaid} {DebtAsset}; health factor {Before} → {After}",
                        account.Venue, account.LoanId, account.PortfolioId, call.SeizedQuantity, call.SeizedAsset, call.DebtRepaid, position.DebtAsset, Ratios.ForLog(call.HealthFactorBefore), Ratios.ForLog(call.HealthFactorAfter));
                }
            });
    }

    /// <summary>The report of one liquidation call; its ids are deterministic (the account's liquidation count after it).</summary>
    private ExecutionReport LiquidationReport(LendingAccount account, string debtAsset, LiquidationEvent call, int number)
    {
        var liquidationId = $"{account.Venue}:{account.PortfolioId}:{account.LoanId}:{number}";
        return new ExecutionReport
        {
            ReportId = "liquidation:" + liquidationId,
            PortfolioId = account.PortfolioId,
            Kind = ReportKind.Liquidation,
            ReportedAt = time.GetUtcNow().ToTimestamp(),
            Message = string.Create(CultureInfo.InvariantCulture, $"{account.Venue} liquidated loan {account.LoanId}: health factor {call.HealthFactorBefore:F4} → {call.HealthFactorAfter:F4}"),
            Liquidation = new Liquidation
            {
                LiquidationId = liquidationId,
                Venue = account.Venue,
                LoanId = account.LoanId,
                SeizedAsset = call.SeizedAsset,
                SeizedQuantity = call.SeizedQuantity,
                DebtAsset = debtAsset,
                DebtRepaid = call.DebtRepaid,
                HealthFactorBefore = Ratios.ForWire(call.HealthFactorBefore),
                HealthFactorAfter = Ratios.ForWire(call.HealthFactorAfter),
                LiquidatedAt = time.GetUtcNow().ToTimestamp(),
            },
        };
    }

    private async Task<LendingAccount> ValuedAsync(LendingAccount account)
    {
        var valued = account.Clone();
        var position = ToDomain(account);
        var prices = await PricesAsync(position);
        valued.HealthFactor = Venue(account.Venue) is { } venue && prices.Missing.Length == 0 ? Ratios.ForWire(LendingVenue.HealthFactor(position, venue, prices.Of)) : 0;
        return valued;
    }

    /// <summary>Consolidated mids of the account's instruments; the base currency is 1.</summary>
    private Task<(Func<string, decimal> Of, string[] Missing)> PricesAsync(LendingPosition position) =>
        Mids.OfAsync(market, position.Collateral.Keys.Append(position.DebtAsset), atOne: position.BaseCurrency);

    public static LendingPosition ToDomain(LendingAccount account) => new(
        account.Venue,
        account.PortfolioId,
        account.LoanId,
        account.BaseCurrency,
        account.Collateral.GroupBy(c => c.Asset, StringComparer.Ordinal).ToDictionary(g => g.Key, g => g.Sum(c => c.Quantity.ToDecimal()), StringComparer.Ordinal),
        account.DebtAsset,
        account.Debt.ToDecimal(),
        account.Liquidations);

    public static LendingAccount ToWire(LendingPosition position, long version)
    {
        var account = new LendingAccount
        {
            Venue = position.Venue,
            PortfolioId = position.PortfolioId,
            LoanId = position.LoanId,
            BaseCurrency = position.BaseCurrency,
            DebtAsset = position.DebtAsset,
            Debt = position.Debt,
            Liquidations = position.Liquidations,
            Version = version,
        };
        account.Collateral.AddRange(position.Collateral.OrderBy(c => c.Key, StringComparer.Ordinal).Select(c => new LendingCollateral { Asset = c.Key, Quantity = c.Value }));
        return account;
    }
}

/// <summary>Runs the lending venues' and the trading venues' margin liquidations on every market.quotes event.</summary>
public sealed class LiquidationMonitor(LendingDesk lending, MarginDesk margin) : IEventHandler<QuotesUpdated>
{
    public async Task HandleAsync(QuotesUpdated message, EventContext context, CancellationToken cancellationToken)
    {
        var changed = message.Prices.Select(p => p.InstrumentId).ToHashSet(StringComparer.Ordinal);
        await lending.LiquidateAsync(changed, cancellationToken);
        await margin.LiquidateAsync(changed, cancellationToken);
    }
}
