using Google.Protobuf.WellKnownTypes;

namespace RebalanceMesh.Contracts;

/// <summary>Conversions between protobuf timestamps and <see cref="DateTimeOffset"/>.</summary>
public static class TimestampConversions
{
    /// <summary>Wire timestamp of <paramref name="value"/>.</summary>
    public static Timestamp ToTimestamp(this DateTimeOffset value) => Timestamp.FromDateTimeOffset(value);

    /// <summary>The timestamp as a <see cref="DateTimeOffset"/>, or null when unset.</summary>
    public static DateTimeOffset? ToDateTimeOffsetOrNull(this Timestamp? value) =>
        value is null ? null : value.ToDateTimeOffset();
}
