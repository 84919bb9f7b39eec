namespace RebalanceMesh.Execution;

/// <summary>
/// The recorded outcome of a venue operation (a loan leg, a top-up, a transfer), "accepted|quantity|reason", stored
/// with the account it changed so a redelivered leg returns the same answer.
/// </summary>
internal static class RecordedOperation
{
    public static string Format(bool accepted, decimal quantity, string reason) =>
        string.Join('|', accepted ? "1" : "0", quantity.ToString(System.Globalization.CultureInfo.InvariantCulture), reason);

    public static (bool Accepted, decimal Quantity, string Reason) Parse(string recorded)
    {
        var parts = recorded.Split('|', 3);
        return (parts[0] == "1", decimal.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture), parts[2]);
    }
}
