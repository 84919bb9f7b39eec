using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Domain;

namespace RebalanceMesh.Contracts;

/// <summary>Wire-level checks for <see cref="RequestValidator"/>: decimals and sides as the protos define them.</summary>
public static class ValidationExtensions
{
    /// <summary>
    /// Largest magnitude a price or quantity may have (10¹²): the product of two stays far inside
    /// <see cref="decimal"/>'s range even summed over thousands of positions, so no valid request overflows.
    /// </summary>
    public const decimal MaxMagnitude = 1_000_000_000_000m;

    /// <summary>Largest magnitude of a cash amount (10¹⁵).</summary>
    public const decimal MaxCashMagnitude = 1_000_000_000_000_000m;

    /// <summary>Sign rules for a decimal field.</summary>
    public enum DecimalRule
    {
        /// <summary>Any value.</summary>
        Any,
        /// <summary>Zero or more.</summary>
        NonNegative,
        /// <summary>Strictly more than zero.</summary>
        Positive,
    }

    /// <summary>
    /// Parses a required wire decimal and checks its sign; records a violation and returns false otherwise.
    /// </summary>
    public static bool RequireDecimal(this RequestValidator validator, DecimalValue? wire, string field, DecimalRule rule, out decimal value, decimal maxMagnitude = MaxMagnitude)
    {
        value = 0m;
        if (wire is null || string.IsNullOrEmpty(wire.Value))
        {
            validator.Add(field, "is required");
            return false;
        }

        if (!DecimalValue.TryParse(wire, out value))
        {
            validator.Add(field, $"'{Truncate(wire.Value)}' is not a plain decimal number");
            return false;
        }

        if (Math.Abs(value) > maxMagnitude)
        {
            validator.Add(field, $"must be at most {maxMagnitude:0} in magnitude");
            return false;
        }

        return rule switch
        {
            DecimalRule.NonNegative => validator.Require(value >= 0m, field, "must not be negative"),
            DecimalRule.Positive => validator.Require(value > 0m, field, "must be greater than zero"),
            _ => true,
        };
    }

    /// <summary>Like <see cref="RequireDecimal"/> but an absent field yields <paramref name="fallback"/>.</summary>
    public static bool OptionalDecimal(this RequestValidator validator, DecimalValue? wire, string field, DecimalRule rule, decimal fallback, out decimal value, decimal maxMagnitude = MaxMagnitude)
    {
        if (wire is null || string.IsNullOrEmpty(wire.Value))
        {
            value = fallback;
            return true;
        }

        return validator.RequireDecimal(wire, field, rule, out value, maxMagnitude);
    }

    /// <summary>Checks that a timestamp is set (unless optional) and within 0001-01-01 … 9999-12-31 with valid nanos.</summary>
    public static bool RequireTimestamp(this RequestValidator validator, Google.Protobuf.WellKnownTypes.Timestamp? timestamp, string field, bool optional = false)
    {
        if (timestamp is null)
        {
            return optional || validator.Require(false, field, "is required");
        }

        const long minSeconds = -62_135_596_800L;
        const long maxSeconds = 253_402_300_799L;
        return validator.Require(
            timestamp.Seconds is >= minSeconds and <= maxSeconds && timestamp.Nanos is >= 0 and < 1_000_000_000,
            field,
            "must be a valid time between 0001-01-01 and 9999-12-31");
    }

    public static bool RequireSide(this RequestValidator validator, Side side, string field) =>
        validator.Require(side is Side.Buy or Side.Sell, field, "must be SIDE_BUY or SIDE_SELL");

    private static string Truncate(string value) => value.Length <= 32 ? value : value[..32] + "…";
}
