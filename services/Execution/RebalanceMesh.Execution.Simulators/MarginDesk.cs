using System.Diagnostics.Metrics;
using System.Globalization;
using Google.Protobuf.WellKnownTypes;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;
using RebalanceMesh.Domain;
using RebalanceMesh.Execution.Core;
using RebalanceMesh.MarketState;

namespace RebalanceMesh.Execution.Simulators;

/// <summary>
/// The trading venues' margin accounts: per (venue, portfolio) the collateral and the perpetuals and futures held
/// there, in Redis. Top-up legs add collateral once each (operation id = plan and leg); fills of account legs in
/// margined contracts move the account's positions and collateral once each (operation id = client order id); and as
/// quotes move, every account below its maintenance margin is liquidated by its venue's rules
/// (<see cref="MarginVenue"/>), each closed position reported through the outbox so planning's portfolio follows.
/// Marks are the consolidated mids of market state.
/// </summary>
public sealed class MarginDesk(SimulatedAccountStore store, MarketStateStore market, ReportOutbox outbox, IOptions<ExecutionOptions> options, TimeProvider time, ILogger<MarginDesk> logger)
{
    private static readonly Meter Meter = new("RebalanceMesh.Execution.Margin");
    private static readonly Counter<long> Operations = Meter.CreateCounter<long>("rebalancemesh.execution.margin_operations", description: "Top-ups and fills applied to venue margin accounts, by operation and outcome.");
    private static readonly Counter<long> Liquidations = Meter.CreateCounter<long>("rebalancemesh.execution.margin_liquidations", description: "Positions trading venues liquidated below maintenance margin, by venue.");
    private const int MaxPositions = 100;

    /// <summary>The margin terms of a trading venue, or null when it clears no margined contracts.</summary>
    public MarginTerms? Terms(string venueId) => options.Value.Venues.FirstOrDefault(v => v.VenueId == venueId)?.Margin;

    /// <summary>Validates and stores a margin account a client opens on a trading venue.</summary>
    public async Task<VenueMarginAccount> OpenAsync(VenueMarginAccount account)
    {
        var check = new RequestValidator();
        if (check.RequireIdentifier(account.Venue, "account.venue"))
        {
            check.Require(Terms(account.Venue) is not null, "account.venue", "is not a trading venue with margin accounts: " + string.Join(", ", options.Value.Venues.Where(v => v.Margin is not null).Select(v => v.VenueId)));
        }

        check.RequireIdentifier(account.PortfolioId, "account.portfolio_id");
        check.RequireCurrency(account.BaseCurrency, "account.base_currency");
        check.RequireDecimal(account.Collateral, "account.collateral", ValidationExtensions.DecimalRule.NonNegative, out _);
        check.RequireCount(account.Positions.Count, MaxPositions, "account.positions");
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < account.Positions.Count && i < MaxPositions; i++)
        {
            var at = $"account.positions[{i}]";
            var position = account.Positions[i];
            if (check.RequireIdentifier(position.InstrumentId, at + ".instrument_id"))
            {
                check.Require(seen.Add(position.InstrumentId), at + ".instrument_id", "appears more than once");
            }

            if (check.RequireDecimal(position.Quantity, at + ".quantity", ValidationExtensions.DecimalRule.Any, out var quantity))
            {
                check.Require(quantity != 0, at + ".quantity", "must not be zero");
            }

            check.RequireDecimal(position.EntryPrice, at + ".entry_price", ValidationExtensions.DecimalRule.Positive, out _);
            check.OptionalDecimal(position.Multiplier, at + ".multiplier", ValidationExtensions.DecimalRule.Positive, 1m, out _);
        }

        check.RequireCount(account.SpotBalances.Count, MaxPositions, "account.spot_balances");
        var spot = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < account.SpotBalances.Count && i < MaxPositions; i++)
        {
            var at = $"account.spot_balances[{i}]";
            if (check.RequireIdentifier(account.SpotBalances[i].InstrumentId, at + ".instrument_id"))
            {
                check.Require(spot.Add(account.SpotBalances[i].InstrumentId), at + ".instrument_id", "appears more than once");
            }

            check.RequireDecimal(account.SpotBalances[i].Quantity, at + ".quantity", ValidationExtensions.DecimalRule.NonNegative, out _);
        }

        check.ThrowIfInvalid();
        var stored = ToWire(ToDomain(account), 1);
        await store.SaveMarginAsync(stored);
        logger.LogInformation("Margin account {Venue}/{PortfolioId} opened: collateral {Collateral} {Currency}, {Positions} positions", stored.Venue, stored.PortfolioId, stored.Collateral.Value, stored.BaseCurrency, stored.Positions.Count);
        return await ValuedAsync(stored);
    }

    /// <summary>An account valued at current marks, or null when it does not exist.</summary>
    public async Task<VenueMarginAccount?> GetAsync(string venue, string portfolioId)
    {
        var (account, _) = await store.GetMarginAsync(SimulatedAccountStore.MarginKey(venue, portfolioId));
        return account is null ? null : await ValuedAsync(account);
    }

    /// <summary>
    /// A top-up leg once: its amount (the leg's quantity) into the account's collateral. A redelivered leg returns the
    /// recorded outcome; a venue without the account refuses.
    /// </summary>
    public async Task<VenueOperationResult> TopUpAsync(VenueOperation leg)
    {
        var (amount, portfolioId) = (leg.Quantity, leg.PortfolioId);
        var outcome = (await ApplyOnceAsync(SimulatedAccountStore.MarginKey(leg.Venue, portfolioId), leg.OperationId, amount,
            $"{leg.Venue} has no margin account for portfolio {portfolioId}",
            account => amount <= 0 ? (null, "the amount must be positive") : (MarginVenue.TopUp(account, amount), string.Empty)))!; // a missing account is refused, never absent
        Operations.Add(1, new KeyValuePair<string, object?>("operation", "top_up"), new KeyValuePair<string, object?>("outcome", outcome.Accepted ? "applied" : "refused"));
        return outcome;
    }

    /// <summary>
    /// A collateral transfer leg once: its amount leaves the margin account on the leg's from_venue — which allows it
    /// only while what stays covers its initial margin (<see cref="MarginVenue.Withdraw"/>) — and lands in the account on
    /// the leg's venue, both in one transaction. A redelivered leg returns the recorded outcome.
    /// </summary>
    public async Task<VenueOperationResult> TransferAsync(VenueOperation leg)
    {
        var (operationId, portfolioId, amount) = (leg.OperationId, leg.PortfolioId, leg.Quantity);
        var fromKey = SimulatedAccountStore.MarginKey(leg.FromVenue, portfolioId);
        var toKey = SimulatedAccountStore.MarginKey(leg.Venue, portfolioId);
        return await RecordedOperation.RunOnceAsync(
            () => store.GetMarginOperationAsync(operationId),
            outcome => store.RecordMarginOperationAsync(operationId, outcome),
            async () =>
            {
                var (from, fromRaw) = await store.GetMarginAsync(fromKey);
                var (to, toRaw) = await store.GetMarginAsync(toKey);
                if (from is null || to is null || leg.FromVenue == leg.Venue || Terms(leg.FromVenue) is not { } terms)
                {
                    return OperationTry.Refused($"a transfer needs margin accounts of portfolio {portfolioId} on two venues ({leg.FromVenue} → {leg.Venue})");
                }

                var source = ToDomain(from);
                var marks = await MarksAsync(source);
                if (marks.Missing.Length > 0)
                {
                    return OperationTry.Refused("no mark for " + string.Join(", ", marks.Missing));
                }

                var (sourceAfter, refusal) = MarginVenue.Withdraw(source, amount, marks.Of, terms);
                if (sourceAfter is null)
                {
                    return OperationTry.Refused($"{leg.FromVenue} refuses: {refusal}");
                }

                var destinationAfter = MarginVenue.TopUp(ToDomain(to), amount);
                if (!await store.TryTransferMarginAsync(fromKey, fromRaw, ToWire(sourceAfter, from.Version + 1), toKey, toRaw, ToWire(destinationAfter, to.Version + 1), operationId, RecordedOperation.Format(true, amount, string.Empty)))
                {
                    return OperationTry.Raced;
                }

                Operations.Add(1, new KeyValuePair<string, object?>("operation", "transfer"), new KeyValuePair<string, object?>("outcome", "applied"));
                logger.LogInformation("Moved {Amount} {Currency} of collateral of {PortfolioId} from {From} to {To}", amount, from.BaseCurrency, portfolioId, leg.FromVenue, leg.Venue);
                return OperationTry.Done(amount);
            },
            $"Margin accounts of {portfolioId} are changing too often; retry.");
    }

    /// <summary>
    /// Why the venue rejects a sell of <paramref name="quantity"/> spot units in the portfolio's account there, or null:
    /// when the account holds them, when the portfolio has no account on the venue, or for margined contracts (their
    /// sells open or reduce positions against collateral).
    /// </summary>
    public async Task<string?> SpotSellRefusalAsync(string portfolioId, string venue, string instrumentId, decimal quantity)
    {
        var (wire, _) = await store.GetMarginAsync(SimulatedAccountStore.MarginKey(venue, portfolioId));
        if (wire is null || await IsMarginedAsync(instrumentId) is not null)
        {
            return null;
        }

        return MarginVenue.SpotSellRefusal(ToDomain(wire), instrumentId, quantity);
    }

    /// <summary>
    /// A fill in the portfolio's account on <paramref name="venue"/>, once per client order id, when the portfolio has
    /// an account there: a registered perpetual or future moves the margin position and collateral, anything else the
    /// spot units.
    /// </summary>
    public async Task ApplyFillAsync(string portfolioId, string venue, string instrumentId, decimal signedQuantity, decimal price, decimal fee, string clientOrderId)
    {
        if (Terms(venue) is null)
        {
            return;
        }

        var multiplier = await IsMarginedAsync(instrumentId);
        // Without an account on the venue the fill is the portfolio's alone: nothing applies, nothing is recorded.
        var outcome = await ApplyOnceAsync(SimulatedAccountStore.MarginKey(venue, portfolioId), "fill:" + clientOrderId, Math.Abs(signedQuantity), missing: null, account =>
            multiplier is { } m ? (MarginVenue.ApplyFill(account, instrumentId, signedQuantity, price, fee, m), string.Empty)
            : account.SpotUnits(instrumentId) + signedQuantity < 0 ? (null, MarginVenue.SpotSellRefusal(account, instrumentId, -signedQuantity)!) // a race with another sell: recorded, not applied
            : (MarginVenue.ApplySpotFill(account, instrumentId, signedQuantity), string.Empty));
        if (outcome is { } applied)
        {
            Operations.Add(1, new KeyValuePair<string, object?>("operation", multiplier is null ? "spot_fill" : "fill"), new KeyValuePair<string, object?>("outcome", applied.Accepted ? "applied" : "refused"));
        }
    }

    /// <summary>The contract multiplier of a registered perpetual or future; null for anything else (spot).</summary>
    private async Task<decimal?> IsMarginedAsync(string instrumentId) =>
        await market.GetRegisteredInstrumentAsync(instrumentId) is { Kind: InstrumentKind.Perpetual or InstrumentKind.Future } instrument
            ? DecimalValue.TryParse(instrument.Multiplier, out var m) && m > 0 ? m : 1m
            : null;

    /// <summary>
    /// Liquidates every margin account holding one of <paramref name="changed"/> whose equity is below its maintenance
    /// margin; each closed position is committed to the outbox with the account, then published.
    /// </summary>
    public async Task LiquidateAsync(IReadOnlySet<string> changed, CancellationToken cancellationToken) =>
        await LiquidationPass.RunAsync(
            await store.GetMarginKeysAsync(changed),
            store.GetMarginAsync,
            account => LiquidationOfAsync(account, changed),
            (key, raw, liquidated) => store.TryUpdateMarginAsync(key, raw, liquidated.After, reports: liquidated.Reports),
            outbox,
            cancellationToken);

    /// <summary>The venue's liquidation of an account holding one of <paramref name="changed"/> below maintenance margin, or null.</summary>
    private async Task<Liquidated<VenueMarginAccount>?> LiquidationOfAsync(VenueMarginAccount wire, IReadOnlySet<string> changed)
    {
        if (Terms(wire.Venue) is not { } terms || !wire.Positions.Any(p => changed.Contains(p.InstrumentId)))
        {
            return null;
        }

        var account = ToDomain(wire);
        var marks = await MarksAsync(account);
        if (marks.Missing.Length > 0)
        {
            return null;
        }

        var (after, calls) = MarginVenue.Liquidate(account, marks.Of, terms);
        if (calls.Count == 0)
        {
            return null;
        }

        var reports = calls.Select((call, i) => LiquidationReport(wire, call, wire.Liquidations + i + 1)).ToArray();
        return new Liquidated<VenueMarginAccount>(
            ToWire(after, wire.Version + 1),
            reports,
            "liquidate margin account",
            [new("execution.venue", wire.Venue), new("execution.portfolio_id", wire.PortfolioId), new("execution.liquidation_calls", calls.Count)],
            () =>
            {
                Liquidations.Add(calls.Count, new KeyValuePair<string, object?>("venue", wire.Venue));
                foreach (var call in calls)
                {
                    logger.LogWarning("{Venue} liquidated {Quantity} {Instrument} of {PortfolioId} at {Price} below maintenance margin: realised {Pnl}, fee {Fee}; margin ratio {Before} → {After}",
                        wire.Venue, call.ClosedQuantity, call.Instrument, wire.PortfolioId, call.Price, call.RealizedPnl, call.Fee, Ratios.ForLog(call.RatioBefore), Ratios.ForLog(call.RatioAfter));
                }
            });
    }

    private ExecutionReport LiquidationReport(VenueMarginAccount account, MarginLiquidationCall call, int number)
    {
        var liquidationId = $"{account.Venue}:{account.PortfolioId}:margin:{number}";
        return new ExecutionReport
        {
            ReportId = "margin-liquidation:" + liquidationId,
            PortfolioId = account.PortfolioId,
            Kind = ReportKind.MarginLiquidation,
            ReportedAt = time.GetUtcNow().ToTimestamp(),
            Message = string.Create(CultureInfo.InvariantCulture, $"{account.Venue} liquidated {call.ClosedQuantity} {call.Instrument} at {call.Price}: margin ratio {call.RatioBefore:F4} → {Ratios.ForLog(call.RatioAfter)}"),
            MarginLiquidation = new MarginLiquidation
            {
                LiquidationId = liquidationId,
                Venue = account.Venue,
                InstrumentId = call.Instrument,
                ClosedQuantity = call.ClosedQuantity,
                Price = call.Price,
                Fee = call.Fee,
                RealizedPnl = call.RealizedPnl,
                RatioBefore = Ratios.ForWire(call.RatioBefore),
                RatioAfter = Ratios.ForWire(call.RatioAfter),
                LiquidatedAt = time.GetUtcNow().ToTimestamp(),
            },
        };
    }

    /// <summary>
    /// Applies <paramref name="change"/> to one account once under <paramref name="operationId"/>
    /// (<see cref="RecordedOperation.RunOnceAsync"/>), recording <paramref name="quantity"/> as what it moved. A missing
    /// account is refused with <paramref name="missing"/>, or, when that is null, the operation does not apply: null,
    /// nothing recorded.
    /// </summary>
    private async Task<VenueOperationResult?> ApplyOnceAsync(string key, string operationId, decimal quantity, string? missing, Func<MarginAccountState, (MarginAccountState? After, string Reason)> change)
    {
        var absent = false;
        var outcome = await RecordedOperation.RunOnceAsync(
            () => store.GetMarginOperationAsync(operationId),
            outcome => store.RecordMarginOperationAsync(operationId, outcome),
            async () =>
            {
                var (wire, raw) = await store.GetMarginAsync(key);
                if (wire is null)
                {
                    absent = missing is null;
                    return absent ? OperationTry.Absent : OperationTry.Refused(missing!);
                }

                var (after, refusal) = change(ToDomain(wire));
                return after is null ? OperationTry.Refused(refusal)
                    : await store.TryUpdateMarginAsync(key, raw, ToWire(after, wire.Version + 1), operationId, RecordedOperation.Format(true, quantity, string.Empty)) ? OperationTry.Done(quantity)
                    : OperationTry.Raced;
            },
            $"Margin account {key} is changing too often; retry.");
        return absent ? null : outcome;
    }

    private async Task<VenueMarginAccount> ValuedAsync(VenueMarginAccount wire)
    {
        var valued = wire.Clone();
        var account = ToDomain(wire);
        var marks = await MarksAsync(account);
        if (Terms(wire.Venue) is { } terms && marks.Missing.Length == 0)
        {
            valued.Equity = MarginVenue.Equity(account, marks.Of);
            valued.MaintenanceMargin = MarginVenue.Maintenance(account, marks.Of, terms);
            valued.MarginRatio = Ratios.ForWire(MarginVenue.Ratio(account, marks.Of, terms));
        }

        return valued;
    }

    /// <summary>Consolidated mids of the account's contracts.</summary>
    private Task<(Func<string, decimal> Of, string[] Missing)> MarksAsync(MarginAccountState account) =>
        Mids.OfAsync(market, account.Positions.Select(p => p.Instrument));


    public static MarginAccountState ToDomain(VenueMarginAccount account) => new(
        account.Venue,
        account.PortfolioId,
        account.BaseCurrency,
        account.Collateral.ToDecimal(),
        account.Positions.Select(p => new MarginPosition(p.InstrumentId, p.Quantity.ToDecimal(), p.EntryPrice.ToDecimal(), DecimalValue.TryParse(p.Multiplier, out var m) && m > 0 ? m : 1m)).ToArray(),
        account.Liquidations,
        account.SpotBalances.Where(b => b.Quantity.ToDecimal() != 0).ToDictionary(b => b.InstrumentId, b => b.Quantity.ToDecimal(), StringComparer.Ordinal));

    public static VenueMarginAccount ToWire(MarginAccountState account, long version)
    {
        var wire = new VenueMarginAccount
        {
            Venue = account.Venue,
            PortfolioId = account.PortfolioId,
            BaseCurrency = account.BaseCurrency,
            Collateral = account.Collateral,
            Liquidations = account.Liquidations,
            Version = version,
        };
        wire.Positions.AddRange(account.Positions.OrderBy(p => p.Instrument, StringComparer.Ordinal).Select(p => new VenueMarginPosition
        {
            InstrumentId = p.Instrument,
            Quantity = p.Quantity,
            EntryPrice = p.EntryPrice,
            Multiplier = p.Multiplier,
        }));
        wire.SpotBalances.AddRange((account.Spot ?? new Dictionary<string, decimal>()).OrderBy(b => b.Key, StringComparer.Ordinal).Select(b => new VenueSpotBalance { InstrumentId = b.Key, Quantity = b.Value }));
        return wire;
    }
}
