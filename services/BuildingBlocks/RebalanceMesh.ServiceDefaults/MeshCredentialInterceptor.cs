using Grpc.Core;
using Grpc.Core.Interceptors;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>Adds the mesh credential (Auth:MeshToken) to every call a service makes to another service of the mesh.</summary>
public sealed class MeshCredentialInterceptor(string? meshToken) : Interceptor
{
    public override AsyncUnaryCall<TResponse> AsyncUnaryCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncUnaryCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, WithCredential(context));

    public override AsyncServerStreamingCall<TResponse> AsyncServerStreamingCall<TRequest, TResponse>(TRequest request, ClientInterceptorContext<TRequest, TResponse> context, AsyncServerStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(request, WithCredential(context));

    public override AsyncClientStreamingCall<TRequest, TResponse> AsyncClientStreamingCall<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context, AsyncClientStreamingCallContinuation<TRequest, TResponse> continuation) =>
        continuation(WithCredential(context));

    private ClientInterceptorContext<TRequest, TResponse> WithCredential<TRequest, TResponse>(ClientInterceptorContext<TRequest, TResponse> context)
        where TRequest : class
        where TResponse : class
    {
        if (string.IsNullOrEmpty(meshToken))
        {
            return context;
        }

        var headers = context.Options.Headers ?? [];
        if (headers.Get(MeshAuth.MeshTokenHeader) is null)
        {
            headers.Add(MeshAuth.MeshTokenHeader, meshToken);
        }

        return new ClientInterceptorContext<TRequest, TResponse>(context.Method, context.Host, context.Options.WithHeaders(headers));
    }
}
