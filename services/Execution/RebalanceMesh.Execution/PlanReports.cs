using Google.Protobuf.WellKnownTypes;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.Contracts.Execution.V1;

namespace RebalanceMesh.Execution;

/// <summary>The execution reports of a plan, as they are committed into the outbox and published.</summary>
public static class PlanReports
{
    /// <summary>
    /// A report of the plan. Its id is deterministic — the fill's id, or the leg's or the plan's end — so a report
    /// published twice (relayed after a crash, or again for an order journaled before the outbox) is the same report.
    /// </summary>
    public static ExecutionReport New(PlanApproved plan, string legId, ReportKind kind, DateTimeOffset now, Action<ExecutionReport> fill)
    {
        var report = new ExecutionReport
        {
            PlanId = plan.PlanId,
            PortfolioId = plan.PortfolioId,
            LegId = legId,
            Kind = kind,
            ReportedAt = now.ToTimestamp(),
        };
        fill(report);
        report.ReportId = kind switch
        {
            ReportKind.Fill => "fill:" + report.Fill.FillId,
            ReportKind.LegDone => $"leg-done:{plan.PlanId}:{legId}",
            ReportKind.PlanDone => "plan-done:" + plan.PlanId,
            _ => throw new ArgumentOutOfRangeException(nameof(kind), kind, "Not a plan report."),
        };
        return report;
    }

    /// <summary>An immediate-or-cancel order's one fill: what the order filled in all.</summary>
    public static ExecutionReport Fill(PlanApproved plan, ApprovedLeg leg, Order order, DateTimeOffset now) =>
        Fill(plan, leg, order, order.ClientOrderId + ":1", order.FilledQuantity.ToDecimal(), order.AveragePrice.ToDecimal(), order.Fees.ToDecimal(), now);

    /// <summary>One fill of an order (a resting order has several, each under its own id).</summary>
    public static ExecutionReport Fill(PlanApproved plan, ApprovedLeg leg, Order order, string fillId, decimal quantity, decimal price, decimal fee, DateTimeOffset now) =>
        New(plan, leg.LegId, ReportKind.Fill, now, r => r.Fill = new Fill
        {
            FillId = fillId,
            ClientOrderId = order.ClientOrderId,
            Venue = order.Venue,
            InstrumentId = order.InstrumentId,
            Side = order.Side,
            Quantity = quantity,
            Price = price,
            Fee = fee,
            FilledAt = order.UpdatedAt,
            Source = Contracts.Common.V1.FillSource.Venue,
        });
}
