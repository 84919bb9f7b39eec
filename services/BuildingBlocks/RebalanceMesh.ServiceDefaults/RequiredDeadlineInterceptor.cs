using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.Logging;
using RebalanceMesh.Domain;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// Every unary call must carry a deadline (the <c>grpc-timeout</c> header): a call without one could hold a handler,
/// its Redis work and the downstream calls it makes for ever. Such calls are refused with INVALID_ARGUMENT naming
/// <c>grpc-timeout</c>. Streams (watches) are long-lived by design and health/reflection are for probes, so they are
/// exempt. The deadline then travels on: mesh clients inherit the server call's deadline and cancellation
/// (<see cref="ServiceDefaultsExtensions.AddMeshGrpcClient{TClient}"/>). Off with <c>Grpc:RequireDeadline=false</c>.
/// </summary>
public sealed class RequiredDeadlineInterceptor(IConfiguration configuration, ILogger<RequiredDeadlineInterceptor> logger) : Interceptor
{
    /// <summary>The field a missing deadline is reported on.</summary>
    public const string Field = "grpc-timeout";

    private readonly bool _required = configuration.GetValue("Grpc:RequireDeadline", true);

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        if (_required && context.Deadline == DateTime.MaxValue && !context.Method.StartsWith("/grpc.", StringComparison.Ordinal))
        {
            logger.LogInformation("Refused {Method} from {Peer}: no deadline", context.Method, context.Peer);
            throw DomainException.Invalid(Field, "every call needs a deadline (set one on the call, for example 30 s)");
        }

        return continuation(request, context);
    }
}
