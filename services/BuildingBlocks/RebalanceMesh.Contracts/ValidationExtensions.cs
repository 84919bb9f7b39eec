using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Domain;

namespace RebalanceMesh.Contracts;

/// <summary>Wire-level checks for <see cref="RequestValidator"/>: decimals and sides as the protos define them.</summary>
public static class ValidationExtensions
{
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
    public static bool RequireDecimal(this RequestValidator validator, DecimalValue? wire, string field, DecimalRule rule, out decimal value)
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

        return rule switch
        {
            DecimalRule.NonNegative => validator.Require(value >= 0m, field, "must not be negative"),
            DecimalRule.Positive => validator.Require(value > 0m, field, "must be greater than zero"),
            _ => true,
        };
    }

    /// <summary>Like <see cref="RequireDecimal"/> but an absent field yields <paramref name="fallback"/>.</summary>
    public static bool OptionalDecimal(this RequestValidator validator, DecimalValue? wire, string field, DecimalRule rule, decimal fallback, out decimal value)
    {
        if (wire is null || string.IsNullOrEmpty(wire.Value))
        {
            value = fallback;
            return true;
        }

        return validator.RequireDecimal(wire, field, rule, out value);
    }

    public static bool RequireSide(this RequestValidator validator, Side side, string field) =>
        validator.Require(side is Side.Buy or Side.Sell, field, "must be SIDE_BUY or SIDE_SELL");

    private static string Truncate(string value) => value.Length <= 32 ? value : value[..32] + "…";
}
