using RebalanceMesh.Contracts.Common.V1;

namespace RebalanceMesh.BuildingBlocks.Tests;

public class DecimalValueTests
{
    [Theory]
    [InlineData("1.500", "1.5")]
    [InlineData("-0.000100", "-0.0001")]
    [InlineData("100", "100")]
    [InlineData("0.0", "0")]
    [InlineData("79228162514264337593543950335", "79228162514264337593543950335")]
    public void Writes_exact_plain_decimals_without_trailing_zeros(string input, string wire) =>
        Assert.Equal(wire, DecimalValue.From(decimal.Parse(input, System.Globalization.CultureInfo.InvariantCulture)).Value);

    [Theory]
    [InlineData("1e5")]
    [InlineData("")]
    [InlineData("1,000")]
    [InlineData("NaN")]
    [InlineData("Infinity")]
    [InlineData("0x10")]
    [InlineData("1.2.3")]
    [InlineData("99999999999999999999999999999999")]
    public void Rejects_anything_but_plain_decimal_notation(string wire) =>
        Assert.False(DecimalValue.TryParse(new DecimalValue { Value = wire }, out _));

    [Fact]
    public void Round_trips_exactly()
    {
        const decimal value = 12345.678901234567890123m;
        DecimalValue wire = value;
        Assert.True(DecimalValue.TryParse(wire, out var back));
        Assert.Equal(value, back);
        Assert.Equal(value, wire.ToDecimal());
    }
}

public class WireValidationTests
{
    [Fact]
    public void Decimals_beyond_the_magnitude_limit_are_violations_not_overflows()
    {
        var check = new RebalanceMesh.Domain.RequestValidator();
        Assert.False(RebalanceMesh.Contracts.ValidationExtensions.RequireDecimal(check, new DecimalValue { Value = "79228162514264337593543950335" }, "q", RebalanceMesh.Contracts.ValidationExtensions.DecimalRule.Any, out _));
        Assert.True(RebalanceMesh.Contracts.ValidationExtensions.RequireDecimal(check, new DecimalValue { Value = "999999999999" }, "p", RebalanceMesh.Contracts.ValidationExtensions.DecimalRule.Positive, out _));
        Assert.Equal(["q"], check.Violations.Select(v => v.Field));
    }

    [Fact]
    public void Timestamps_outside_the_representable_range_are_violations()
    {
        var check = new RebalanceMesh.Domain.RequestValidator();
        RebalanceMesh.Contracts.ValidationExtensions.RequireTimestamp(check, new Google.Protobuf.WellKnownTypes.Timestamp { Seconds = long.MaxValue }, "a");
        RebalanceMesh.Contracts.ValidationExtensions.RequireTimestamp(check, new Google.Protobuf.WellKnownTypes.Timestamp { Nanos = -1 }, "b");
        RebalanceMesh.Contracts.ValidationExtensions.RequireTimestamp(check, null, "c");
        RebalanceMesh.Contracts.ValidationExtensions.RequireTimestamp(check, null, "d", optional: true);
        Assert.Equal(["a", "b", "c"], check.Violations.Select(v => v.Field));
    }
}
