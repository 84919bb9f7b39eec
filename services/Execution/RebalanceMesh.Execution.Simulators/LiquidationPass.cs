using RebalanceMesh.Contracts.Events.V1;
using StackExchange.Redis;

namespace RebalanceMesh.Execution.Simulators;

/// <summary>
/// What a venue's liquidation of one account came to: the account after it, the reports of its calls, the span to
/// record it under, and what to count and log once it is committed.
/// </summary>
internal sealed record Liquidated<TAccount>(TAccount After, IReadOnlyList<ExecutionReport> Reports, string Activity, IReadOnlyList<KeyValuePair<string, object?>> Tags, Action Committed);

/// <summary>
/// The pass every venue desk (lending, margin) runs on a quote event: for each account that may be affected, read it,
/// let the venue's rules liquidate it at current prices, commit the account together with the reports of its calls
/// (optimistic concurrency: an account a leg changed meanwhile is measured again), then publish the reports — the
/// outbox relays them if the service dies in between.
/// </summary>
internal static class LiquidationPass
{
    /// <summary>How often an account that keeps changing under the pass is measured again.</summary>
    private const int MaxAttempts = 20;

    /// <param name="liquidate">The venue's liquidation of an account as read, or null when it has nothing to do.</param>
    /// <param name="commit">Writes the account after the liquidation and its reports if the account still holds the bytes read.</param>
    public static async Task RunAsync<TAccount>(
        IReadOnlyList<string> keys,
        Func<string, Task<(TAccount? Account, RedisValue Raw)>> read,
        Func<TAccount, Task<Liquidated<TAccount>?>> liquidate,
        Func<string, RedisValue, Liquidated<TAccount>, Task<bool>> commit,
        ReportOutbox outbox,
        CancellationToken cancellationToken)
        where TAccount : class
    {
        foreach (var key in keys)
        {
            for (var attempt = 0; attempt < MaxAttempts; attempt++)
            {
                var (account, raw) = await read(key);
                if (account is null || await liquidate(account) is not { } liquidated)
                {
                    break;
                }

                using var activity = PlanExecutor.ActivitySource.StartActivity(liquidated.Activity);
                foreach (var (name, value) in liquidated.Tags)
                {
                    activity?.SetTag(name, value);
                }

                if (!await commit(key, raw, liquidated))
                {
                    continue; // a leg changed the account meanwhile: measure again
                }

                liquidated.Committed();
                await outbox.PublishAsync(liquidated.Reports, cancellationToken);
                break;
            }
        }
    }
}
