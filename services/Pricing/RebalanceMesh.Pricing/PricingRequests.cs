using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Pricing.V1;
using RebalanceMesh.Domain;
using WireOptionRight = RebalanceMesh.Contracts.Common.V1.OptionRight;

namespace RebalanceMesh.Pricing;

/// <summary>The request rules pricing's RPCs share: batch sizes, instrument ids, instrument terms and market overrides.</summary>
public static class PricingRequests
{
    /// <summary>Items of one valuation, implied-volatility or upsert request at most.</summary>
    public const int MaxValuationItems = 10_000;

    /// <summary>Instrument ids of one quote query at most.</summary>
    public const int MaxInstrumentsPerQuery = 10_000;

    /// <summary>A batch of items: at least one, at most the limit, and a valid valuation time when given.</summary>
    public static void ValidateBatch(RequestValidator check, int count, Timestamp? valuationTime)
    {
        check.Require(count > 0, "items", "must not be empty");
        check.RequireCount(count, MaxValuationItems, "items");
        check.RequireTimestamp(valuationTime, "valuation_time", optional: true);
    }

    /// <summary>Instrument ids of a query: at most the limit, each a valid identifier.</summary>
    public static void ValidateInstrumentIds(RequestValidator check, IReadOnlyList<string> ids)
    {
        check.RequireCount(ids.Count, MaxInstrumentsPerQuery, "instrument_ids");
        for (var i = 0; i < ids.Count && i < MaxInstrumentsPerQuery; i++)
        {
            check.RequireIdentifier(ids[i], $"instrument_ids[{i}]");
        }
    }

    /// <summary>A valuation item: an instrument id, or an instrument with valid terms; and valid overrides.</summary>
    public static void ValidateItem(RequestValidator check, ValuationItem item, string path)
    {
        if (item.Instrument is null && item.InstrumentId.Length > 0)
        {
            check.RequireIdentifier(item.InstrumentId, path + ".instrument_id");
        }
        else if (!ValidateInstrument(check, item.Instrument, path + ".instrument"))
        {
            return;
        }

        ValidateOverrides(check, item.Overrides, path + ".overrides");
    }

    /// <summary>Checks an instrument's identity and terms; false when it is missing.</summary>
    public static bool ValidateInstrument(RequestValidator check, Instrument? instrument, string path)
    {
        if (!check.Require(instrument is not null, path, "is required"))
        {
            return false;
        }

        check.RequireIdentifier(instrument!.InstrumentId, path + ".instrument_id");
        check.Require(instrument.Kind != InstrumentKind.Unspecified, path + ".kind", "is required");
        check.Require(System.Enum.IsDefined(instrument.Kind), path + ".kind", "is not a known kind");
        if (instrument.Kind != InstrumentKind.Spot && instrument.Kind != InstrumentKind.Unspecified)
        {
            if (check.RequireIdentifier(instrument.UnderlyingId, path + ".underlying_id"))
            {
                check.Require(!string.Equals(instrument.UnderlyingId, instrument.InstrumentId, StringComparison.Ordinal), path + ".underlying_id", "a derivative cannot be its own underlying");
            }
        }

        check.OptionalDecimal(instrument.Multiplier, path + ".multiplier", ValidationExtensions.DecimalRule.Positive, 1m, out _);
        if (instrument.Kind == InstrumentKind.Option)
        {
            check.RequireDecimal(instrument.Strike, path + ".strike", ValidationExtensions.DecimalRule.Positive, out _);
            check.Require(instrument.OptionRight is WireOptionRight.Call or WireOptionRight.Put, path + ".option_right", "is required for options");
            check.RequireTimestamp(instrument.Expiry, path + ".expiry");
        }

        if (instrument.Kind == InstrumentKind.Future)
        {
            check.RequireTimestamp(instrument.Expiry, path + ".expiry");
        }

        check.Require(!instrument.Inverse || instrument.Kind is InstrumentKind.Perpetual or InstrumentKind.Future, path + ".inverse", "only perpetuals and futures can be inverse");
        check.Require(instrument.UnderlyingKind is InstrumentKind.Unspecified or InstrumentKind.Spot or InstrumentKind.Future or InstrumentKind.Perpetual, path + ".underlying_kind", "must be spot, perpetual or future");
        check.Require(instrument.QuoteCurrency.Length <= 8 && instrument.SettlementCurrency.Length <= 8, path + ".quote_currency", "currency codes are at most 8 characters");
        return true;
    }

    /// <summary>Market overrides within their ranges; a deprecated field and its successor not both set.</summary>
    public static void ValidateOverrides(RequestValidator check, MarketOverrides? o, string path)
    {
        if (o is null)
        {
            return;
        }

        check.OptionalDecimal(o.UnderlyingPrice, path + ".underlying_price", ValidationExtensions.DecimalRule.Positive, 1m, out _);
        check.RequireRange(o.Volatility, 0, 10, path + ".volatility");
#pragma warning disable CS0612 // the deprecated rate and carry are still served, and may not be combined with their successors
        check.RequireRange(o.Rate, -1, 1, path + ".rate");
        check.RequireRange(o.Carry, -1, 1, path + ".carry");
        check.Require(!(o.HasRiskFreeRate && o.Rate != 0), path + ".risk_free_rate", "set risk_free_rate or the deprecated rate, not both");
        check.Require(!(o.HasCarryRate && o.Carry != 0), path + ".carry_rate", "set carry_rate or the deprecated carry, not both");
#pragma warning restore CS0612
        if (o.HasRiskFreeRate)
        {
            check.RequireRange(o.RiskFreeRate, -1, 1, path + ".risk_free_rate");
        }

        if (o.HasCarryRate)
        {
            check.RequireRange(o.CarryRate, -1, 1, path + ".carry_rate");
        }

        if (o.HasFundingRate)
        {
            check.RequireRange(o.FundingRate, -0.1, 0.1, path + ".funding_rate");
        }

        check.RequireRange(o.FundingIntervalHours, 0, 24 * 7, path + ".funding_interval_hours");
    }
}
