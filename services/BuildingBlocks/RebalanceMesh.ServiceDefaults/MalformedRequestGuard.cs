using System.Diagnostics.Metrics;
using System.Reflection;
using System.Runtime.CompilerServices;
using Grpc.AspNetCore.Server.Model;
using Grpc.Core;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using RebalanceMesh.Domain;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// Binds every generated gRPC service as grpc-dotnet's own binder does (the Grpc.Tools <c>BindService</c> method,
/// the implementation's public overrides, its attributes as endpoint metadata), with one difference: a request
/// message that does not parse is answered InvalidArgument with a field violation, counted and logged as a warning
/// without a stack trace. grpc-dotnet would answer Unknown "Exception was thrown by handler." and log an error.
/// <para>
/// A unary or server-streaming request is read before the interceptors run. Its failed parse therefore yields an
/// empty placeholder that the method's invoker — innermost, after authentication, the role check and the deadline
/// rule — refuses, so an unauthenticated caller still hears Unauthenticated first. A streamed request message is read
/// inside the handler, which the refusal then ends.
/// </para>
/// </summary>
public sealed class MalformedRequestGuard<TService>(ILogger<MalformedRequestGuard<TService>> logger) : IServiceMethodProvider<TService>
    where TService : class
{
    public void OnServiceMethodDiscovery(ServiceMethodProviderContext<TService> context)
    {
        if (FindBindMethod(typeof(TService)) is not { } bind)
        {
            return; // not a Grpc.Tools service: left to grpc-dotnet's other providers
        }

        bind.Invoke(null, [new Binder(context, bind.GetParameters()[1].ParameterType, logger), null]);
    }

    /// <summary>The generated <c>BindService(ServiceBinderBase, XxxBase)</c> named by the base class's attribute.</summary>
    private static MethodInfo? FindBindMethod(Type serviceType)
    {
        for (var type = serviceType; type is not null; type = type.BaseType)
        {
            if (type.GetCustomAttribute<BindServiceMethodAttribute>() is { } attribute)
            {
                return attribute.BindType.GetMethod(attribute.BindMethodName, BindingFlags.Public | BindingFlags.Static, [typeof(ServiceBinderBase), type]);
            }
        }

        return null;
    }

    private sealed class Binder(ServiceMethodProviderContext<TService> context, Type declaringType, ILogger logger) : ServiceBinderBase
    {
        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, UnaryServerMethod<TRequest, TResponse>? handler)
        {
            var (invoke, metadata) = Bind<UnaryServerMethod<TService, TRequest, TResponse>>(method.Name, typeof(TRequest), typeof(ServerCallContext));
            var placeholders = new ConditionalWeakTable<TRequest, string>();
            context.AddUnaryMethod(Guarded(method, placeholders), metadata, (service, request, call) =>
            {
                Refuse(placeholders, request, method);
                return invoke(service, request, call);
            });
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ServerStreamingServerMethod<TRequest, TResponse>? handler)
        {
            var (invoke, metadata) = Bind<ServerStreamingServerMethod<TService, TRequest, TResponse>>(method.Name, typeof(TRequest), typeof(IServerStreamWriter<TResponse>), typeof(ServerCallContext));
            var placeholders = new ConditionalWeakTable<TRequest, string>();
            context.AddServerStreamingMethod(Guarded(method, placeholders), metadata, (service, request, stream, call) =>
            {
                Refuse(placeholders, request, method);
                return invoke(service, request, stream, call);
            });
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, ClientStreamingServerMethod<TRequest, TResponse>? handler)
        {
            var (invoke, metadata) = Bind<ClientStreamingServerMethod<TService, TRequest, TResponse>>(method.Name, typeof(IAsyncStreamReader<TRequest>), typeof(ServerCallContext));
            context.AddClientStreamingMethod(Guarded(method, placeholders: null), metadata, invoke);
        }

        public override void AddMethod<TRequest, TResponse>(Method<TRequest, TResponse> method, DuplexStreamingServerMethod<TRequest, TResponse>? handler)
        {
            var (invoke, metadata) = Bind<DuplexStreamingServerMethod<TService, TRequest, TResponse>>(method.Name, typeof(IAsyncStreamReader<TRequest>), typeof(IServerStreamWriter<TResponse>), typeof(ServerCallContext));
            context.AddDuplexStreamingMethod(Guarded(method, placeholders: null), metadata, invoke);
        }

        /// <summary>
        /// The method with a request deserializer that never throws anything but the refusal: with
        /// <paramref name="placeholders"/> a malformed message becomes a recorded empty placeholder, refused later by
        /// the invoker; without (streamed requests) it is refused where it is read.
        /// </summary>
        private Method<TRequest, TResponse> Guarded<TRequest, TResponse>(Method<TRequest, TResponse> method, ConditionalWeakTable<TRequest, string>? placeholders)
            where TRequest : class
            where TResponse : class
        {
            var parse = method.RequestMarshaller.ContextualDeserializer;
            var requests = Marshallers.Create(method.RequestMarshaller.ContextualSerializer, payload =>
            {
                try
                {
                    return parse(payload);
                }
                catch (Exception ex)
                {
                    var reason = $"is not a valid serialized {typeof(TRequest).Name}: {ex.Message}";
                    MalformedRequests.Add(1, new KeyValuePair<string, object?>("rpc.method", method.FullName));
                    logger.LogWarning("Malformed request message for {Method} ({Bytes} bytes): {Reason}", method.FullName, payload.PayloadLength, ex.Message);
                    if (placeholders is null)
                    {
                        throw Refusal(reason);
                    }

                    var placeholder = Activator.CreateInstance<TRequest>();
                    placeholders.AddOrUpdate(placeholder, reason);
                    return placeholder;
                }
            });
            return new Method<TRequest, TResponse>(method.Type, method.ServiceName, method.Name, requests, method.ResponseMarshaller);
        }

        private static void Refuse<TRequest, TResponse>(ConditionalWeakTable<TRequest, string> placeholders, TRequest request, Method<TRequest, TResponse> method)
            where TRequest : class
            where TResponse : class
        {
            if (placeholders.TryGetValue(request, out var reason))
            {
                throw Refusal(reason);
            }
        }

        private static RpcException Refusal(string reason) =>
            ErrorStatusInterceptor.ToRpcException(DomainException.Invalid("request", reason));

        /// <summary>The implementation's override of a generated method, and its attributes as endpoint metadata (as grpc-dotnet binds them).</summary>
        private (TDelegate Invoke, List<object> Metadata) Bind<TDelegate>(string name, params Type[] parameters)
            where TDelegate : Delegate
        {
            var handler = FindOverride(name, parameters)
                ?? throw new InvalidOperationException($"Could not find '{name}' on {typeof(TService)}.");
            var metadata = new List<object>();
            metadata.AddRange(typeof(TService).GetCustomAttributes(inherit: true));
            metadata.AddRange(handler.GetCustomAttributes(inherit: true));
            metadata.Add(new HttpMethodMetadata(["POST"], acceptCorsPreflight: true));
            return ((TDelegate)Delegate.CreateDelegate(typeof(TDelegate), handler), metadata);
        }

        private MethodInfo? FindOverride(string name, Type[] parameters)
        {
            for (var type = typeof(TService); type is not null; type = type.BaseType)
            {
                var candidate = type.GetMethod(name, BindingFlags.Public | BindingFlags.Instance, parameters);
                if (candidate is null)
                {
                    return null;
                }

                if (candidate.IsVirtual && candidate.GetBaseDefinition().DeclaringType == declaringType)
                {
                    return candidate;
                }
            }

            return null;
        }
    }

    private static readonly Meter Meter = new(MeshTelemetry.Prefix + ".Rpc.Malformed");

    private static readonly Counter<long> MalformedRequests = Meter.CreateCounter<long>(
        "rebalancemesh.rpc.server.malformed_requests", description: "Request messages that did not parse, by method (answered InvalidArgument).");
}

/// <summary>Registers <see cref="MalformedRequestGuard{TService}"/> in place of grpc-dotnet's own binder.</summary>
public static class MalformedRequestGuardExtensions
{
    /// <summary>
    /// Replaces grpc-dotnet's binder of generated services (an internal type, found by name) with the guard. Call after
    /// <c>AddGrpc</c>; the test of this project fails if grpc-dotnet renames its binder.
    /// </summary>
    public static IServiceCollection AddMalformedRequestGuard(this IServiceCollection services)
    {
        var original = services.Where(d => d.ServiceType == typeof(IServiceMethodProvider<>)
            && d.ImplementationType is { Name: "BinderServiceMethodProvider`1" }).ToArray();
        if (original.Length != 1)
        {
            throw new InvalidOperationException("grpc-dotnet's BinderServiceMethodProvider was not found: AddMalformedRequestGuard needs AddGrpc first.");
        }

        services.Remove(original[0]);
        services.AddSingleton(typeof(IServiceMethodProvider<>), typeof(MalformedRequestGuard<>));
        return services;
    }
}
