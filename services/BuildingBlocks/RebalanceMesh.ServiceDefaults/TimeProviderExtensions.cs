using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>Time comes from an injected <see cref="TimeProvider"/>; tests replace it.</summary>
public static class TimeProviderExtensions
{
    public static IServiceCollection TryAddTimeProvider(this IServiceCollection services)
    {
        services.TryAddSingleton(TimeProvider.System);
        return services;
    }
}
