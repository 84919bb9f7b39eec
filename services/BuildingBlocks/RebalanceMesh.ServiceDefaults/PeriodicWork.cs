using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// A background service that runs a round every <c>interval</c> of its <see cref="TimeProvider"/> (virtual time in
/// tests). A round that fails is logged as a warning and the next one runs: a Redis outage or an unreachable bus delays
/// the work, never stops it (an exception escaping a <see cref="BackgroundService"/> stops the host). Stopping the host
/// ends the loop.
/// </summary>
public abstract class PeriodicWork(TimeSpan interval, TimeProvider time, ILogger logger) : BackgroundService
{
    /// <summary>The clock the rounds run on (for the work's own timing too).</summary>
    protected TimeProvider Time { get; } = time;

    /// <summary>What the work is, for the log.</summary>
    protected abstract string Name { get; }

    /// <summary>One round.</summary>
    protected abstract Task RunRoundAsync(CancellationToken cancellationToken);

    private PeriodicTimer? _timer;

    /// <summary>Makes the timer before the loop runs (on its own thread): once the host has started, its clock drives the rounds.</summary>
    public override Task StartAsync(CancellationToken cancellationToken)
    {
        _timer = new PeriodicTimer(interval, Time);
        return base.StartAsync(cancellationToken);
    }

    protected sealed override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var timer = _timer ?? throw new InvalidOperationException($"{Name}: ExecuteAsync ran before StartAsync.");
        try
        {
            while (await timer.WaitForNextTickAsync(stoppingToken))
            {
                try
                {
                    await RunRoundAsync(stoppingToken);
                }
                catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
                {
                    logger.LogWarning(ex, "{Work}: a round failed; the next runs in {Interval}", Name, interval);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }
}
