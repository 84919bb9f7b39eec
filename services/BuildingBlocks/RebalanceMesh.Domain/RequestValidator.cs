namespace RebalanceMesh.Domain;

/// <summary>
/// Collects every field violation of a request and throws them together, so a client learns all
/// its mistakes from one call. Used by every host to validate incoming messages.
/// </summary>
public sealed class RequestValidator
{
    private readonly List<FieldViolation> _violations = [];

    public IReadOnlyList<FieldViolation> Violations => _violations;

    public bool IsValid => _violations.Count == 0;

    public RequestValidator Add(string field, string description)
    {
        _violations.Add(new FieldViolation(field, description));
        return this;
    }

    /// <summary>Records a violation when <paramref name="condition"/> is false; returns the condition.</summary>
    public bool Require(bool condition, string field, string description)
    {
        if (!condition)
        {
            Add(field, description);
        }

        return condition;
    }

    public bool RequireNotEmpty(string? value, string field, int maxLength = 128)
    {
        if (string.IsNullOrWhiteSpace(value))
        {
            Add(field, "is required");
            return false;
        }

        return Require(value.Length <= maxLength, field, $"must be at most {maxLength} characters");
    }

    /// <summary>Identifier rule shared by portfolios, instruments and venues: 1–64 of [A-Za-z0-9._-].</summary>
    public bool RequireIdentifier(string? value, string field)
    {
        if (!RequireNotEmpty(value, field, 64))
        {
            return false;
        }

        foreach (var c in value!)
        {
            if (!(char.IsAsciiLetterOrDigit(c) || c is '-' or '_' or '.'))
            {
                Add(field, "may contain only letters, digits, '-', '_' and '.'");
                return false;
            }
        }

        return true;
    }

    /// <summary>Longest free-text reason a caller may give (a halt, a cancel).</summary>
    public const int MaxReasonLength = 500;

    /// <summary>An optional free-text reason: at most <see cref="MaxReasonLength"/> characters.</summary>
    public bool RequireReason(string? value, string field = "reason")
        => Require((value?.Length ?? 0) <= MaxReasonLength, field, $"must be at most {MaxReasonLength} characters");

    /// <summary>Currency code rule (base currencies, collateral): 3 to 8 upper-case ASCII letters.</summary>
    public bool RequireCurrency(string? value, string field)
        => Require(value is { Length: >= 3 and <= 8 } && value.All(char.IsAsciiLetterUpper), field, "must be 3 to 8 upper-case letters");

    public bool RequireFinite(double value, string field)
        => Require(double.IsFinite(value), field, "must be a finite number");

    public bool RequireRange(double value, double min, double max, string field)
        => RequireFinite(value, field) && Require(value >= min && value <= max, field, $"must be between {min} and {max}");

    public bool RequireCount(int count, int max, string field)
        => Require(count <= max, field, $"must have at most {max} entries");

    /// <summary>Throws an InvalidArgument <see cref="DomainException"/> when anything was recorded.</summary>
    public void ThrowIfInvalid()
    {
        if (!IsValid)
        {
            var summary = string.Join("; ", _violations.Select(v => $"{v.Field}: {v.Description}"));
            throw new DomainException(DomainErrorKind.InvalidArgument, $"Invalid request: {summary}", _violations.ToArray());
        }
    }
}
