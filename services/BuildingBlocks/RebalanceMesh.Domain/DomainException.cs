namespace RebalanceMesh.Domain;

/// <summary>What kind of failure a <see cref="DomainException"/> reports; hosts map it to a status code.</summary>
public enum DomainErrorKind
{
    /// <summary>The request is malformed or out of range; see the field violations.</summary>
    InvalidArgument,
    /// <summary>Something the request names does not exist.</summary>
    NotFound,
    /// <summary>A concurrent change won (version mismatch, duplicate).</summary>
    Conflict,
    /// <summary>The system is not in a state that allows the operation (for example a trading halt).</summary>
    FailedPrecondition,
    /// <summary>The request is valid but asks for more than a limit allows.</summary>
    ResourceExhausted,
}

/// <summary>One offending field of a request, with a path like <c>portfolio.positions[2].quantity</c>.</summary>
public sealed record FieldViolation(string Field, string Description);

/// <summary>A failure the caller can act on. Bugs are not DomainExceptions and surface as Internal.</summary>
public class DomainException : Exception
{
    public DomainException(DomainErrorKind kind, string message, IReadOnlyList<FieldViolation>? violations = null)
        : base(message)
    {
        Kind = kind;
        Violations = violations ?? [];
    }

    public DomainException()
        : this(DomainErrorKind.FailedPrecondition, "Domain error.")
    {
    }

    public DomainException(string message)
        : this(DomainErrorKind.FailedPrecondition, message)
    {
    }

    public DomainException(string message, Exception innerException)
        : base(message, innerException)
    {
        Kind = DomainErrorKind.FailedPrecondition;
        Violations = [];
    }

    public DomainErrorKind Kind { get; }

    public IReadOnlyList<FieldViolation> Violations { get; }

    public static DomainException NotFound(string what) => new(DomainErrorKind.NotFound, $"{what} was not found.");

    public static DomainException Invalid(string field, string description) =>
        new(DomainErrorKind.InvalidArgument, $"{field}: {description}", [new FieldViolation(field, description)]);
}
