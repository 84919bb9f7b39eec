using Grpc.Core;
using Grpc.Core.Interceptors;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>Gives every outgoing call without a deadline a default one, so no mesh call waits forever.</summary>
public sealed class DefaultDeadlineInterceptor(TimeSpan timeout) : Interceptor
{
    /// <summary>The deadline of tools' and tests' calls that set none.</summary>
    public static readonly TimeSpan ClientDefault = TimeSpan.FromSeconds(30);

    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(
        TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation)
        => continuation(request, WithDeadline(context));

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(
        TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncServerStreamingCallContinuation<TRequest, TResponse> continuation)
        => continuation(request, context);

    private ClientInterceptorContext<TRequest, TResponse> WithDeadline<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context)
        where TRequest : class
        where TResponse : class
    {
        if (context.Options.Deadline is not null)
        {
            return context;
        }

        var options = context.Options.WithDeadline(DateTime.UtcNow.Add(timeout));
        return new ClientInterceptorContext<TRequest, TResponse>(context.Method, context.Host, options);
    }
}

/// <summary>Clients of the mesh outside a service host (the CLI, load tools, tests).</summary>
public static class MeshClientExtensions
{
    /// <summary>
    /// A call invoker over <paramref name="channel"/> that gives every unary call without a deadline
    /// <paramref name="timeout"/> (30 s by default): the services refuse unary calls without one.
    /// </summary>
    public static CallInvoker WithDefaultDeadline(this ChannelBase channel, TimeSpan? timeout = null) =>
        channel.Intercept(new DefaultDeadlineInterceptor(timeout ?? DefaultDeadlineInterceptor.ClientDefault));
}
