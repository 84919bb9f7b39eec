using RebalanceMesh.Execution.Core;
using RebalanceMesh.Domain;

namespace RebalanceMesh.Execution.Simulators;

/// <summary>
/// The recorded outcome of a venue operation (a loan leg, a top-up, a transfer, a fill in a venue account),
/// "accepted|quantity|reason", stored with the account it changed so a redelivered leg returns the same answer; and
/// the one way such an operation runs once (<see cref="RunOnceAsync"/>).
/// </summary>
public static class RecordedOperation
{
    /// <summary>Optimistic-concurrency tries of one operation before it gives up (liquidations change accounts too).</summary>
    private const int MaxAttempts = 20;

    public static string Format(bool accepted, decimal quantity, string reason) =>
        string.Join('|', accepted ? "1" : "0", quantity.ToString(System.Globalization.CultureInfo.InvariantCulture), reason);

    public static (bool Accepted, decimal Quantity, string Reason) Parse(string recorded)
    {
        var parts = recorded.Split('|', 3);
        return (parts[0] == "1", decimal.Parse(parts[1], System.Globalization.CultureInfo.InvariantCulture), parts[2]);
    }

    /// <summary>
    /// Runs a venue operation once under its id. A recorded outcome is returned as it was. Otherwise each try reads
    /// the account and either commits (the account and the record of what it moved in one transaction), is refused
    /// (the refusal is recorded unless another try recorded first, then read back: a concurrent commit wins), does not
    /// apply (nothing is recorded: not accepted, no reason), or lost the account to another writer and runs again on
    /// the new state.
    /// </summary>
    /// <param name="recorded">Reads the operation's record, null before it ran.</param>
    /// <param name="record">Records an outcome unless one is recorded already.</param>
    /// <param name="attempt">One try on the account as it is now.</param>
    /// <param name="busy">Why it gave up, when every try lost its account to another writer.</param>
    public static async Task<VenueOperationResult> RunOnceAsync(
        Func<Task<string?>> recorded, Func<string, Task> record, Func<Task<OperationTry>> attempt, string busy)
    {
        for (var i = 0; i < MaxAttempts; i++)
        {
            if (await recorded() is { } outcome)
            {
                var (accepted, quantity, reason) = Parse(outcome);
                return new VenueOperationResult(accepted, quantity, reason);
            }

            var tried = await attempt();
            if (tried.NotApplicable)
            {
                return new VenueOperationResult(false, 0m, string.Empty);
            }

            if (tried.Committed is true)
            {
                return new VenueOperationResult(true, tried.Quantity, string.Empty);
            }

            if (tried.Committed is false)
            {
                await record(Format(false, 0, tried.Reason));
            }
        }

        throw new DomainException(DomainErrorKind.Conflict, busy);
    }
}

/// <summary>
/// One try of a venue operation: committed with what it moved, refused with why, raced by another writer, or not
/// applicable (the operation concerns an account that does not exist and is not recorded).
/// </summary>
public readonly record struct OperationTry(bool? Committed, decimal Quantity, string Reason, bool NotApplicable = false)
{
    public static OperationTry Done(decimal quantity) => new(true, quantity, string.Empty);

    public static OperationTry Refused(string reason) => new(false, 0m, reason);

    public static OperationTry Raced { get; } = new(null, 0m, string.Empty);

    public static OperationTry Absent { get; } = new(false, 0m, string.Empty, NotApplicable: true);
}
