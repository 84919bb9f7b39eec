using System.Collections.Concurrent;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace RebalanceMesh.Testing;

/// <summary>
/// A server interceptor for a service under test: records every unary request of type <typeparamref name="TRequest"/>
/// it serves and, when told, holds the first until released — so a test can queue calls behind one in flight.
/// Register the instance as a singleton and add the interceptor type to the host's gRPC options.
/// </summary>
public sealed class HeldCalls<TRequest> : Interceptor
    where TRequest : class
{
    public ConcurrentQueue<TRequest> Requests { get; } = new();

    /// <summary>Set before the first call to hold it until this completes.</summary>
    public TaskCompletionSource? HoldFirst { get; set; }

    /// <summary>Completes when the first call has arrived (and is held, if <see cref="HoldFirst"/> was set).</summary>
    public TaskCompletionSource FirstArrived { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override async Task<TResponse> UnaryServerHandler<TAny, TResponse>(TAny request, ServerCallContext context, UnaryServerMethod<TAny, TResponse> continuation)
    {
        if (request is TRequest recorded)
        {
            Requests.Enqueue(recorded);
            if (Requests.Count == 1)
            {
                FirstArrived.TrySetResult();
                if (HoldFirst is { } hold)
                {
                    await hold.Task;
                }
            }
        }

        return await continuation(request, context);
    }
}
