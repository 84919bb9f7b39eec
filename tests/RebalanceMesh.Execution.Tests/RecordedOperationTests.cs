using RebalanceMesh.Domain;

using RebalanceMesh.Execution.Simulators;

namespace RebalanceMesh.Execution.Tests;

/// <summary>A venue operation runs once under its id, whatever races it (the record stands in for the Redis hash).</summary>
public class RecordedOperationTests
{
    private sealed class Record
    {
        public string? Value { get; set; }

        public int Tries { get; set; }

        public Task<string?> ReadAsync() => Task.FromResult(Value);

        /// <summary>Set unless set (HSETNX).</summary>
        public Task WriteAsync(string outcome)
        {
            Value ??= outcome;
            return Task.CompletedTask;
        }
    }

    private static async Task<(bool Accepted, decimal Quantity, string Reason)> Run(Record record, Func<OperationTry> attempt)
    {
        var (accepted, quantity, reason) = await RecordedOperation.RunOnceAsync(record.ReadAsync, record.WriteAsync, () =>
        {
            record.Tries++;
            return Task.FromResult(attempt());
        }, "busy");
        return (accepted, quantity, reason);
    }

    [Fact]
    public async Task A_recorded_outcome_is_returned_without_trying_again()
    {
        var record = new Record { Value = RecordedOperation.Format(true, 12.5m, string.Empty) };
        Assert.Equal((true, 12.5m, string.Empty), await Run(record, () => throw new InvalidOperationException("must not run")));
        Assert.Equal(0, record.Tries);
    }

    [Fact]
    public async Task A_refusal_is_recorded_and_a_repeat_answers_the_same()
    {
        var record = new Record();
        Assert.Equal((false, 0m, "below 1"), await Run(record, () => OperationTry.Refused("below 1")));
        Assert.Equal((false, 0m, "below 1"), await Run(record, () => OperationTry.Done(5m)));
        Assert.Equal(1, record.Tries);
    }

    [Fact]
    public async Task An_operation_that_does_not_apply_records_nothing()
    {
        // A fill for a venue where the portfolio has no account: no outcome, no record, asked again it tries again.
        var record = new Record();
        Assert.Equal((false, 0m, string.Empty), await Run(record, () => OperationTry.Absent));
        Assert.Null(record.Value);
        Assert.Equal((true, 3m, string.Empty), await Run(record, () => OperationTry.Done(3m)));
        Assert.Equal(2, record.Tries);
    }

    [Fact]
    public async Task A_commit_that_lands_while_a_refusal_is_decided_wins()
    {
        // Another delivery commits (its record lands with the account) between this try's read and its refusal: the
        // refusal is not recorded over it, and what is read back is the commit.
        var record = new Record();
        var outcome = await Run(record, () =>
        {
            record.Value = RecordedOperation.Format(true, 7m, string.Empty);
            return OperationTry.Refused("late");
        });
        Assert.Equal((true, 7m, string.Empty), outcome);
    }

    [Fact]
    public async Task A_try_that_loses_its_account_runs_again_and_gives_up_after_twenty()
    {
        var record = new Record();
        var races = 3;
        Assert.Equal((true, 2m, string.Empty), await Run(record, () => races-- > 0 ? OperationTry.Raced : OperationTry.Done(2m)));
        Assert.Equal(4, record.Tries);

        var busy = new Record();
        var ex = await Assert.ThrowsAsync<DomainException>(() => Run(busy, () => OperationTry.Raced));
        Assert.Equal((DomainErrorKind.Conflict, 20), (ex.Kind, busy.Tries));
        Assert.Null(busy.Value);
    }
}
