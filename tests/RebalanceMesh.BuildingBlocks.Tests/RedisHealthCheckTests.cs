using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Time.Testing;
using RebalanceMesh.ServiceDefaults;
using RebalanceMesh.Testing;
using StackExchange.Redis;

namespace RebalanceMesh.BuildingBlocks.Tests;

public sealed class RedisHealthCheckTests
{
    [Fact]
    public async Task Readiness_reuses_a_result_for_a_second_and_a_stopped_Redis_fails_at_once()
    {
        var redis = new RedisServer();
        await redis.StartAsync();
        try
        {
            await using var connection = await ConnectionMultiplexer.ConnectAsync(ServiceDefaultsExtensions.RedisOptions($"127.0.0.1:{redis.Port}", "health-test"));
            var time = new FakeTimeProvider(new DateTimeOffset(2026, 12, 4, 12, 0, 0, TimeSpan.Zero));
            var check = new RedisHealthCheck(connection, time);
            var context = new HealthCheckContext();
            Assert.Equal(HealthStatus.Healthy, (await check.CheckHealthAsync(context)).Status);

            await redis.StopAsync();
            var commands = connection.GetDatabase();
            var refused = await Assert.ThrowsAnyAsync<RedisException>(async () =>
            {
                // FailFast: once the connection is known to be down, a command fails without waiting for its timeout.
                // The virtual clock never moves here, so a command left waiting would hang this test, not pass it.
                for (var attempt = 0; attempt < 100; attempt++)
                {
                    await commands.StringGetAsync("x");
                    await Task.Yield();
                }
            });
            Assert.IsType<RedisConnectionException>(refused);

            // Within a second of the last probe the last result stands (probes add no PING); after it, the new one.
            time.Advance(TimeSpan.FromMilliseconds(900));
            Assert.Equal(HealthStatus.Healthy, (await check.CheckHealthAsync(context)).Status);
            time.Advance(TimeSpan.FromMilliseconds(200));
            Assert.Equal(HealthStatus.Unhealthy, (await check.CheckHealthAsync(context)).Status);
        }
        finally
        {
            await redis.DisposeAsync();
        }
    }
}
