using Microsoft.Extensions.Options;
using StackExchange.Redis;

namespace RebalanceMesh.Planning;

/// <summary>
/// Runs this replica's monitor: a heartbeat every <see cref="MonitorOptions.HeartbeatInterval"/> (membership and
/// partition moves), and a pass whenever a tick is announced (or at the heartbeat, should an announcement be lost).
/// On shutdown the replica leaves, giving its partitions to the others at once.
/// </summary>
public sealed class MonitorLoop(DriftMonitor monitor, IConnectionMultiplexer redis, IOptions<MonitorOptions> options, TimeProvider time, ILogger<MonitorLoop> logger) : BackgroundService
{
    private readonly WakeSignal _wake = new();

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var subscription = await redis.GetSubscriber().SubscribeAsync(RedisChannel.Literal(MonitorShards.TickChannel));
        subscription.OnMessage(_ => _wake.Set());
        try
        {
            await Task.WhenAll(HeartbeatsAsync(stoppingToken), PassesAsync(stoppingToken));
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
        finally
        {
            await subscription.UnsubscribeAsync();
            try
            {
                await monitor.LeaveAsync(CancellationToken.None);
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                logger.LogWarning(ex, "Monitor could not leave cleanly; its partitions go to the others when its membership ends");
            }
        }
    }

    private async Task HeartbeatsAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            try
            {
                await monitor.HeartbeatAsync(stoppingToken);
                _wake.Set(); // partitions taken may have ticks waiting
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException)
            {
                logger.LogWarning(ex, "Monitor heartbeat failed; retrying");
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                // A bug or data no one foresaw must not stop the monitor: said loudly, tried again at the next beat.
                logger.LogError(ex, "Monitor heartbeat failed unexpectedly; retrying");
            }

            await Task.Delay(options.Value.HeartbeatInterval, time, stoppingToken);
        }
    }

    private async Task PassesAsync(CancellationToken stoppingToken)
    {
        while (!stoppingToken.IsCancellationRequested)
        {
            await _wake.WaitAsync(Timeout.InfiniteTimeSpan, stoppingToken);
            try
            {
                await monitor.ProcessAsync(stoppingToken);
            }
            catch (Exception ex) when (ex is RedisException or TimeoutException or Grpc.Core.RpcException && !stoppingToken.IsCancellationRequested)
            {
                logger.LogWarning(ex, "Monitor pass failed; the ticks stay after the cursors and are evaluated at the next pass");
            }
            catch (Exception ex) when (!stoppingToken.IsCancellationRequested)
            {
                logger.LogError(ex, "Monitor pass failed unexpectedly; the ticks stay after the cursors and are evaluated at the next pass");
            }
        }
    }

    public override void Dispose()
    {
        _wake.Dispose();
        base.Dispose();
    }
}
