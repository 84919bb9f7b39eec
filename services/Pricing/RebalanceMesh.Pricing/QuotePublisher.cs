using Google.Protobuf.WellKnownTypes;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Options;
using RebalanceMesh.Contracts;
using RebalanceMesh.Contracts.Common.V1;
using RebalanceMesh.Contracts.Events.V1;
using RebalanceMesh.EventBus;
using RebalanceMesh.Pricing.Core;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Pricing;

/// <summary>Publishes coalesced consolidated prices on market.quotes, at most once per publish interval.</summary>
public sealed class QuotePublisher(
    QuoteCoalescer<ConsolidatedPrice> coalescer,
    IEventBus bus,
    RedisBroadcast<QuotesUpdated> streams,
    IOptions<PricingOptions> options,
    TimeProvider time,
    ILogger<QuotePublisher> logger) : BackgroundService
{
    /// <summary>Redis channel that feeds StreamQuotes on every pricing replica.</summary>
    public const string BroadcastChannel = "mkt:quotes-updates";

    private static readonly Meter Meter = new("RebalanceMesh.Pricing.Publisher");
    private static readonly Counter<long> Published = Meter.CreateCounter<long>("rebalancemesh.pricing.quote_events.published", description: "market.quotes events published.");

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = new PeriodicTimer(options.Value.PublishInterval, time);
        while (await timer.WaitForNextTickAsync(stoppingToken))
        {
            var prices = coalescer.Flush();
            if (prices.Count == 0)
            {
                continue;
            }

            using var activity = QuoteIngestor.ActivitySource.StartActivity("publish quotes");
            activity?.SetTag("pricing.instruments", prices.Count);
            var message = new QuotesUpdated { AsOf = time.GetUtcNow().ToTimestamp() };
            message.Prices.AddRange(prices);
            try
            {
                await bus.PublishAsync(Topics.MarketQuotes, message, stoppingToken);
                await streams.PublishAsync(message);
                Published.Add(1);
            }
            catch (Exception ex) when (ex is not OperationCanceledException)
            {
                // Put the prices back so the next interval publishes them; newer ones win.
                foreach (var price in prices)
                {
                    coalescer.Restore(price.InstrumentId, price);
                }

                logger.LogWarning(ex, "Publishing market.quotes failed; will retry next interval");
            }
        }
    }
}
