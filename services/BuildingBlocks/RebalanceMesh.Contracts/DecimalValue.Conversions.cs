using System.Globalization;

namespace RebalanceMesh.Contracts.Common.V1;

/// <summary>
/// Exact conversions between the wire's decimal string and <see cref="decimal"/>.
/// This is the only place the string form is parsed or produced.
/// </summary>
public sealed partial class DecimalValue
{
    private const NumberStyles WireStyle = NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint;

    /// <summary>Builds the wire form of <paramref name="value"/>, without trailing zeros.</summary>
    public static DecimalValue From(decimal value) =>
        new() { Value = Normalize(value).ToString(CultureInfo.InvariantCulture) };

    /// <summary>Parses a wire decimal; false when it is empty or not plain decimal notation.</summary>
    public static bool TryParse(DecimalValue? wire, out decimal value)
    {
        value = 0m;
        if (wire is null || string.IsNullOrWhiteSpace(wire.Value) || wire.Value.Length > 64)
        {
            return false;
        }

        return decimal.TryParse(wire.Value, WireStyle, CultureInfo.InvariantCulture, out value);
    }

    /// <summary>The value as a decimal; throws <see cref="FormatException"/> when malformed. Validate first.</summary>
    public decimal ToDecimal() =>
        TryParse(this, out var value) ? value : throw new FormatException($"'{Value}' is not a decimal number.");

    /// <summary>Implicit conversion so domain code can assign decimals to proto fields.</summary>
    public static implicit operator DecimalValue(decimal value) => From(value);

    private static decimal Normalize(decimal value) => value / 1.000000000000000000000000000000000m;
}
