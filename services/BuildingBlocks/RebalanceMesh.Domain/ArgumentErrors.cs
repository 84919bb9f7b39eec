namespace RebalanceMesh.Domain;

/// <summary>Turns a math routine's argument error into a reason a client can read.</summary>
public static class ArgumentErrors
{
    /// <summary>The message without the " (Parameter 'x')" suffix .NET appends.</summary>
    public static string Reason(ArgumentException exception) =>
        exception.ParamName is null ? exception.Message : exception.Message.Replace($" (Parameter '{exception.ParamName}')", string.Empty, StringComparison.Ordinal);
}
