namespace RebalanceMesh.Pricing.Core;

/// <summary>What an instrument is, for valuation.</summary>
public enum ContractKind
{
    Spot,
    Perpetual,
    Future,
    Option,
}

/// <summary>
/// The terms of an instrument. <paramref name="Multiplier"/> is units of underlying per contract for linear
/// contracts and quote-currency face value per contract for inverse ones (e.g. 100 USD per BTC-USD inverse contract).
/// </summary>
public sealed record InstrumentTerms(
    string InstrumentId,
    ContractKind Kind,
    double Multiplier = 1,
    bool Inverse = false,
    double Strike = 0,
    DateTimeOffset? Expiry = null,
    OptionRight Right = OptionRight.Call,
    bool OptionOnFuture = false);

/// <summary>Market inputs of one valuation.</summary>
/// <param name="UnderlyingPrice">Index / spot price of the underlying (for an option on a future: the future's price).</param>
/// <param name="OwnMid">The instrument's own quoted mid (mark of a perpetual or future), when it is quoted.</param>
/// <param name="FundingRate">Funding per interval as venues quote it; null estimates it from the premium.</param>
public sealed record MarketInputs(
    double UnderlyingPrice,
    double? OwnMid,
    double Volatility,
    double Rate,
    double Carry,
    double? FundingRate = null,
    double FundingIntervalHours = 8);

/// <summary>
/// Value and sensitivities of one contract. Price is in the quote currency per contract unit as quoted (for
/// inverse contracts the quote-currency price of the underlying). Delta is the exposure in underlying units per
/// contract (for inverse contracts coins: face / price), so DollarDelta = Delta × underlying price.
/// </summary>
public sealed record ContractValuation(
    double Price,
    double Delta,
    double Gamma,
    double Vega,
    double Theta,
    double Rho,
    double CoinDelta,
    double DollarDelta,
    double IndexPrice,
    double MarkPrice,
    double Basis,
    double AnnualisedBasis,
    double FundingRate,
    double FundingPayment,
    double ContractValue)
{
    public static ContractValuation Linear(double price, double delta, double index, double mark) =>
        new(price, delta, 0, 0, 0, 0, 0, delta * index, index, mark, 0, 0, 0, 0, price);
}

/// <summary>
/// Values spot, perpetual swaps (mark vs index, funding), dated futures (cost of carry, basis), European options
/// (Black–Scholes–Merton with carry; Black-76 when the underlying is a future) and inverse (coin-margined)
/// perpetuals and futures.
/// </summary>
public static class InstrumentPricer
{
    /// <summary>Largest interest-rate-like premium clamp of the funding estimate per interval (BitMEX style, 0.05 %).</summary>
    public const double FundingClamp = 0.0005;

    /// <summary>Default interest component of funding per 8-hour interval (0.01 %), as the large venues use.</summary>
    public const double DefaultFundingInterest = 0.0001;

    public static ContractValuation Value(InstrumentTerms terms, MarketInputs market, DateTimeOffset valuationTime)
    {
        if (!(market.UnderlyingPrice > 0) || !double.IsFinite(market.UnderlyingPrice))
        {
            throw new ArgumentOutOfRangeException(nameof(market), "The underlying price must be positive.");
        }

        var index = market.UnderlyingPrice;
        var years = terms.Expiry is { } expiry ? Math.Max(0, YearFraction.Between(valuationTime, expiry)) : 0;
        var result = terms.Kind switch
        {
            ContractKind.Spot => ContractValuation.Linear(index * terms.Multiplier, terms.Multiplier, index, index),
            ContractKind.Perpetual => Perpetual(terms, market, index),
            ContractKind.Future => Future(terms, market, index, years),
            ContractKind.Option => Option(terms, market, index, years),
            _ => throw new ArgumentOutOfRangeException(nameof(terms), "Unknown contract kind."),
        };

        if (!double.IsFinite(result.Price) || Math.Abs(result.Price) > 1e15 || !double.IsFinite(result.Delta))
        {
            throw new ArgumentOutOfRangeException(nameof(terms), "The valuation is out of range (check expiry, rate and carry).");
        }

        return result;
    }

    private static ContractValuation Perpetual(InstrumentTerms terms, MarketInputs market, double index)
    {
        var mark = market.OwnMid is > 0 ? market.OwnMid.Value : index;
        var premium = (mark - index) / index;
        var interest = DefaultFundingInterest * market.FundingIntervalHours / 8.0;
        var funding = market.FundingRate ?? premium + Math.Clamp(interest - premium, -FundingClamp, FundingClamp);
        var linear = Contract(terms, mark);
        // Longs pay funding when it is positive: the expected payment per contract for the next interval.
        return linear with
        {
            Basis = premium,
            FundingRate = funding,
            FundingPayment = -funding * linear.ContractValue,
            IndexPrice = index,
        };
    }

    private static ContractValuation Future(InstrumentTerms terms, MarketInputs market, double index, double years)
    {
        var fair = index * Math.Exp((market.Rate - market.Carry) * years);
        var mark = market.OwnMid is > 0 ? market.OwnMid.Value : fair;
        var linear = Contract(terms, mark);
        var basis = (mark - index) / index;
        // Sensitivities of the fair value to the index and to the rate (a quoted mark moves with them to first order).
        var growth = mark / index;
        var rho = terms.Inverse ? 0 : index * years * growth * terms.Multiplier;
        return linear with
        {
            Delta = terms.Inverse ? linear.Delta : growth * terms.Multiplier,
            DollarDelta = terms.Inverse ? linear.DollarDelta : growth * terms.Multiplier * index,
            Rho = rho,
            Basis = basis,
            AnnualisedBasis = years > 0 ? Math.Log(mark / index) / years : 0,
            IndexPrice = index,
        };
    }

    /// <summary>A delta-one contract at <paramref name="mark"/>: linear (multiplier units) or inverse (face / mark coins).</summary>
    private static ContractValuation Contract(InstrumentTerms terms, double mark)
    {
        if (!terms.Inverse)
        {
            return new ContractValuation(mark * terms.Multiplier, terms.Multiplier, 0, 0, 0, 0, 0, terms.Multiplier * mark,
                mark, mark, 0, 0, 0, 0, terms.Multiplier * mark);
        }

        // Inverse: the face is in the quote currency; exposure and P&L are in coins. Long one contract ≈ long face/mark coins.
        var coins = terms.Multiplier / mark;
        return new ContractValuation(mark, coins, -terms.Multiplier / (mark * mark), 0, 0, 0, coins, terms.Multiplier,
            mark, mark, 0, 0, 0, 0, coins);
    }

    private static ContractValuation Option(InstrumentTerms terms, MarketInputs market, double underlying, double years)
    {
        // Black-76 is Black–Scholes–Merton on the forward with carry equal to the rate.
        var carry = terms.OptionOnFuture ? market.Rate : market.Carry;
        var g = BlackScholes.Value(terms.Right, underlying, terms.Strike, years, market.Rate, carry, market.Volatility);
        var m = terms.Multiplier;
        return new ContractValuation(g.Price * m, g.Delta * m, g.Gamma * m, g.Vega * m, g.Theta * m, g.Rho * m, 0,
            g.Delta * m * underlying, underlying, g.Price * m, 0, 0, 0, 0, g.Price * m);
    }
}
