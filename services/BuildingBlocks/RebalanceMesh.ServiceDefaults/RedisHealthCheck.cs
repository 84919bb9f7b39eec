using Microsoft.Extensions.Diagnostics.HealthChecks;
using StackExchange.Redis;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// Ready only while Redis answers a PING within <see cref="PingTimeout"/>. A disconnected multiplexer is unready at
/// once, without a PING, and a result is reused for up to <see cref="ResultLifetime"/>: probes answer within a second
/// and do not add a PING each.
/// </summary>
public sealed class RedisHealthCheck(IConnectionMultiplexer redis, TimeProvider time) : IHealthCheck
{
    public static readonly TimeSpan PingTimeout = TimeSpan.FromMilliseconds(800);

    public static readonly TimeSpan ResultLifetime = TimeSpan.FromSeconds(1);

    private (HealthCheckResult Result, DateTimeOffset At)? _last;

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var now = time.GetUtcNow();
        if (_last is { } last && now - last.At < ResultLifetime)
        {
            return last.Result;
        }

        var result = await MeasureAsync(cancellationToken);
        _last = (result, now);
        return result;
    }

    private async Task<HealthCheckResult> MeasureAsync(CancellationToken cancellationToken)
    {
        if (!redis.IsConnected)
        {
            return HealthCheckResult.Unhealthy("Redis is not connected");
        }

        try
        {
            var latency = await redis.GetDatabase().PingAsync().WaitAsync(PingTimeout, time, cancellationToken);
            return HealthCheckResult.Healthy($"Redis answered in {latency.TotalMilliseconds:F1} ms");
        }
        catch (Exception ex) when (ex is RedisException or TimeoutException)
        {
            return HealthCheckResult.Unhealthy("Redis does not answer", ex);
        }
    }
}
