using RebalanceMesh.Pricing.Core;

namespace RebalanceMesh.Pricing.Tests;

public class InstrumentPricerTests
{
    private static readonly DateTimeOffset Now = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private static ContractValuation Value(InstrumentTerms terms, MarketInputs market) => InstrumentPricer.Value(terms, market, Now);

    [Fact]
    public void Spot_is_worth_multiplier_units_of_the_underlying()
    {
        var v = Value(new InstrumentTerms("X", ContractKind.Spot, Multiplier: 10), new MarketInputs(25, null, 0.2, 0.03, 0));
        Assert.Equal((250.0, 10.0, 250.0), (v.Price, v.Delta, v.DollarDelta));
    }

    [Fact]
    public void Dated_future_is_worth_cost_of_carry_and_reports_its_basis()
    {
        var terms = new InstrumentTerms("X-F", ContractKind.Future, Expiry: Now.AddDays(365));
        var fair = Value(terms, new MarketInputs(100, null, 0.2, 0.05, 0.01));
        Assert.Equal(100 * Math.Exp(0.04), fair.Price, 12);            // 104.08107741923882
        Assert.Equal(Math.Exp(0.04), fair.Delta, 12);
        Assert.Equal(0.04, fair.AnnualisedBasis, 12);
        Assert.Equal(100 * Math.Exp(0.04), fair.Rho, 10);               // ∂F/∂r = S·T·e^((r−q)T)

        var quoted = Value(terms, new MarketInputs(100, 105, 0.2, 0.05, 0.01));
        Assert.Equal(105.0, quoted.MarkPrice);
        Assert.Equal(0.05, quoted.Basis, 12);
        Assert.Equal(Math.Log(1.05), quoted.AnnualisedBasis, 12);
    }

    [Fact]
    public void Inverse_contracts_expose_face_over_price_coins()
    {
        // BTC-USD inverse perpetual, 100 USD face, mark 50,000 USD.
        var v = Value(new InstrumentTerms("BTC-INV", ContractKind.Perpetual, Multiplier: 100, Inverse: true), new MarketInputs(50_000, 50_000, 0.6, 0.0, 0.0));
        Assert.Equal(0.002, v.CoinDelta, 15);
        Assert.Equal(0.002, v.Delta, 15);
        Assert.Equal(0.002, v.ContractValue, 15);
        Assert.Equal(100.0, v.DollarDelta, 9);
        Assert.Equal(-100.0 / 2.5e9, v.Gamma, 1e-20);                   // d(face/P)/dP
        Assert.Equal(50_000.0, v.Price);
    }

    [Fact]
    public void Perpetual_funding_follows_the_premium_with_the_interest_clamp()
    {
        var terms = new InstrumentTerms("X-PERP", ContractKind.Perpetual);
        // Premium 0.2 %: funding = 0.002 + clamp(0.0001 − 0.002, ±0.0005) = 0.0015 per 8 h; a long pays 0.0015 × 100.2.
        var rich = Value(terms, new MarketInputs(100, 100.2, 0.2, 0, 0));
        Assert.Equal(0.002, rich.Basis, 12);
        Assert.Equal(0.0015, rich.FundingRate, 12);
        Assert.Equal(-0.0015 * 100.2, rich.FundingPayment, 12);
        // At the index the interest component alone: 0.01 % per 8 h.
        Assert.Equal(0.0001, Value(terms, new MarketInputs(100, null, 0.2, 0, 0)).FundingRate, 15);
        // A given rate wins.
        Assert.Equal(-0.0003, Value(terms, new MarketInputs(100, 100.2, 0.2, 0, 0, FundingRate: -0.0003)).FundingRate, 15);
    }

    [Theory]
    // QuantLib blackFormula (tests/reference/quantlib_european.py): F = 100, T = 0.5, r = 5 %, σ = 20 %.
    [InlineData(OptionRight.Call, 90, 11.481788247156073)]
    [InlineData(OptionRight.Put, 90, 1.728689126872743)]
    [InlineData(OptionRight.Call, 100, 5.498014870607143)]
    [InlineData(OptionRight.Put, 100, 5.498014870607143)]
    [InlineData(OptionRight.Call, 120, 0.7026254694139759)]
    [InlineData(OptionRight.Put, 120, 20.208823709980624)]
    public void Options_on_futures_use_Black_76(OptionRight right, double strike, double expected)
    {
        var terms = new InstrumentTerms("X-F-OPT", ContractKind.Option, Strike: strike, Expiry: Now.AddDays(182.5), Right: right, OptionOnFuture: true);
        var v = Value(terms, new MarketInputs(100, null, 0.2, 0.05, 0.03)); // carry is ignored for options on futures
        Assert.Equal(expected, v.Price, 1e-10);
    }

    [Fact]
    public void Out_of_range_results_are_refused()
    {
        var terms = new InstrumentTerms("X-F", ContractKind.Future, Expiry: Now.AddYears(5000));
        Assert.Throws<ArgumentOutOfRangeException>(() => Value(terms, new MarketInputs(100, null, 0.2, 1.0, 0)));
    }
}
