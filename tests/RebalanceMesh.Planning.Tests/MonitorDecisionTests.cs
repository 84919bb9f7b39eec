using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Planning.V1;
using Action = RebalanceMesh.Planning.AutoPlanner.AutoAction;

namespace RebalanceMesh.Planning.Tests;

/// <summary>What the monitor does in automatic mode: submit, wait, or pre-empt a running rebalance for an emergency.</summary>
public class MonitorDecisionTests
{
    private static readonly DateTimeOffset Now = new(2026, 11, 26, 12, 0, 0, TimeSpan.Zero);

    private static Policy Auto(long cooldownSeconds = 600, int calendarDays = 0) =>
        new() { PortfolioId = "p", ExecutionMode = ExecutionMode.Auto, CooldownSeconds = cooldownSeconds, CalendarIntervalDays = calendarDays };

    private static Plan Last(PlanStatus status, TimeSpan age, params (string Id, LegKind Kind, LegPurpose Purpose)[] legs)
    {
        var plan = new Plan { PlanId = "plan-last", Status = status, CreatedAt = (Now - age).ToTimestamp() };
        plan.Legs.AddRange(legs.Select(l => new PlanLeg { LegId = l.Id, Kind = l.Kind, Purpose = l.Purpose, Side = Side.Buy, Quantity = 1m }));
        return plan;
    }

    [Fact]
    public void A_breach_is_submitted_after_the_cooldown_and_an_emergency_after_the_minimum_spacing()
    {
        Assert.Equal(Action.Submit, AutoPlanner.Decide(null, Now, Auto(), breached: true, emergency: false));
        Assert.Equal(Action.None, AutoPlanner.Decide(null, Now, Auto(), breached: false, emergency: false));
        Assert.Equal(Action.None, AutoPlanner.Decide(null, Now, new Policy(Auto()) { ExecutionMode = ExecutionMode.Manual }, breached: true, emergency: true));

        var recent = Last(PlanStatus.Completed, TimeSpan.FromMinutes(2), ("L1", LegKind.Trade, LegPurpose.Rebalance));
        Assert.Equal(Action.None, AutoPlanner.Decide(recent, Now, Auto(), breached: true, emergency: false)); // 10 min cooldown
        Assert.Equal(Action.Submit, AutoPlanner.Decide(recent, Now, Auto(), breached: true, emergency: true)); // 5 s spacing
        Assert.Equal(Action.None, AutoPlanner.Decide(Last(PlanStatus.Completed, TimeSpan.FromSeconds(2)), Now, Auto(), breached: true, emergency: true));

        // The calendar is due on its own, a day after the last plan.
        Assert.Equal(Action.Submit, AutoPlanner.Decide(Last(PlanStatus.NoAction, TimeSpan.FromDays(2)), Now, Auto(calendarDays: 1), breached: false, emergency: false));
    }

    [Fact]
    public void An_uncurable_breach_is_not_planned_again_until_the_portfolio_the_policy_or_the_breach_changes()
    {
        // The outside client's monitor stored a NO_ACTION plan about every 7 s, forever, for a breach no lot could cure.
        var uncurable = Last(PlanStatus.NoAction, TimeSpan.FromMinutes(30));
        uncurable.NoActionReason = NoActionReason.Uncurable;
        uncurable.PortfolioVersion = 4;
        uncurable.PolicyVersion = 2;
        uncurable.Reasons.Add(new DriftReason { Rule = "absolute_band", InstrumentId = "D", Breached = true });
        uncurable.Reasons.Add(new DriftReason { Rule = "absolute_band", InstrumentId = "A", Breached = false });
        var policy = new Policy(Auto(cooldownSeconds: 0)) { Version = 2 };
        var same = new AutoPlanner.Evaluated(4, new HashSet<string> { "absolute_band:D" });

        Assert.Equal(Action.None, AutoPlanner.Decide(uncurable, Now, policy, breached: true, emergency: false, same));
        Assert.Equal(Action.Submit, AutoPlanner.Decide(uncurable, Now, policy, breached: true, emergency: false, same with { PortfolioVersion = 5 }));
        Assert.Equal(Action.Submit, AutoPlanner.Decide(uncurable, Now, new Policy(policy) { Version = 3 }, breached: true, emergency: false, same));
        Assert.Equal(Action.Submit, AutoPlanner.Decide(uncurable, Now, policy, breached: true, emergency: false, new AutoPlanner.Evaluated(4, new HashSet<string> { "absolute_band:D", "absolute_band:B" })));
        Assert.Equal(Action.Submit, AutoPlanner.Decide(uncurable, Now, policy, breached: true, emergency: true, same));

        // A NO_ACTION plan because the portfolio was inside its bands says nothing about a later breach.
        uncurable.NoActionReason = NoActionReason.InsideBands;
        Assert.Equal(Action.Submit, AutoPlanner.Decide(uncurable, Now, policy, breached: true, emergency: false, same));
    }

    [Fact]
    public void A_running_rebalance_is_pre_empted_once_by_an_emergency_but_a_protective_plan_never()
    {
        var rebalancing = Last(PlanStatus.Executing, TimeSpan.FromSeconds(30), ("L1", LegKind.Trade, LegPurpose.Rebalance), ("H1", LegKind.Trade, LegPurpose.Hedge));
        Assert.Equal(Action.None, AutoPlanner.Decide(rebalancing, Now, Auto(), breached: true, emergency: false)); // waits its end
        Assert.Equal(Action.Preempt, AutoPlanner.Decide(rebalancing, Now, Auto(), breached: true, emergency: true));

        // Asked once: while the cancel is on its way, nothing more.
        rebalancing.CancelRequest = new CancelRequest { RequestedBy = "monitor", Reason = "pre-empted", RequestedAt = Now.ToTimestamp() };
        Assert.Equal(Action.None, AutoPlanner.Decide(rebalancing, Now, Auto(), breached: true, emergency: true));

        // A plan already protecting a loan or margin account (the guards' trades, loan legs, top-ups, transfers, margin
        // closes: their purpose says so, whatever their ids) runs on.
        Assert.Equal(Action.None, AutoPlanner.Decide(Last(PlanStatus.Executing, TimeSpan.Zero, ("x1", LegKind.Trade, LegPurpose.LiquidationGuard), ("x2", LegKind.Trade, LegPurpose.Rebalance)), Now, Auto(), true, true));
        Assert.Equal(Action.None, AutoPlanner.Decide(Last(PlanStatus.Approved, TimeSpan.Zero, ("x1", LegKind.Repay, LegPurpose.LiquidationGuard)), Now, Auto(), true, true));
        Assert.Equal(Action.None, AutoPlanner.Decide(Last(PlanStatus.Executing, TimeSpan.Zero, ("x1", LegKind.MarginTopUp, LegPurpose.MarginGuard)), Now, Auto(), true, true));
        Assert.Equal(Action.None, AutoPlanner.Decide(Last(PlanStatus.Executing, TimeSpan.Zero, ("x1", LegKind.Trade, LegPurpose.MarginGuard)), Now, Auto(), true, true));

        // An id that once meant a guard means nothing now: a rebalancing leg named "G1" is pre-empted like any other.
        Assert.Equal(Action.Preempt, AutoPlanner.Decide(Last(PlanStatus.Executing, TimeSpan.Zero, ("G1", LegKind.Trade, LegPurpose.Rebalance)), Now, Auto(), true, true));

        // A plan stored before legs carried a purpose: its loan legs still count as protective.
        Assert.Equal(Action.None, AutoPlanner.Decide(Last(PlanStatus.Executing, TimeSpan.Zero, ("G1", LegKind.Repay, LegPurpose.Unspecified)), Now, Auto(), true, true));
    }
}
