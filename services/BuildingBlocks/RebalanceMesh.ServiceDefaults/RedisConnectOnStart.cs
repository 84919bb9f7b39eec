using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using StackExchange.Redis;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// Connects to Redis while the host starts, before the server takes a call. Resolved lazily, the multiplexer would
/// connect on the thread of the first call that needs it, synchronously, while every other first call waits on the
/// same singleton: on a small thread pool that is every worker blocked on a connect whose completion needs a worker,
/// and a cold service's first burst stalled for seconds, past the callers' deadlines (seen as 6–7 s stalls of the
/// first eight concurrent calls on two cores).
/// </summary>
internal sealed class RedisConnectOnStart(IServiceProvider services) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        services.GetRequiredService<IConnectionMultiplexer>();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
