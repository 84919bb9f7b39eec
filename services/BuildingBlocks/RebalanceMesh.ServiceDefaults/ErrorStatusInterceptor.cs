using Google.Protobuf.WellKnownTypes;
using Google.Rpc;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.Extensions.Logging;
using RebalanceMesh.Domain;
using StackExchange.Redis;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// Turns failures into proper gRPC statuses for every RPC of a host: domain errors keep their
/// meaning (InvalidArgument carries google.rpc.BadRequest field violations), Redis outages become
/// Unavailable (retryable), a caller that went away is Cancelled, and anything else is Internal
/// with the detail kept in the log, never in the response.
/// </summary>
public sealed class ErrorStatusInterceptor(ILogger<ErrorStatusInterceptor> logger) : Interceptor
{
    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(request, context);
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw Translate(ex, context);
        }
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            return await continuation(requestStream, context);
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw Translate(ex, context);
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(request, responseStream, context);
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw Translate(ex, context);
        }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        try
        {
            await continuation(requestStream, responseStream, context);
        }
        catch (Exception ex) when (ex is not RpcException)
        {
            throw Translate(ex, context);
        }
    }

    /// <summary>Maps an exception to the RpcException a client sees. Public so non-gRPC paths share it.</summary>
    public RpcException Translate(Exception ex, ServerCallContext context)
    {
        switch (ex)
        {
            case DomainException domain:
                logger.LogInformation("{Method} refused: {Kind} {Message}", context.Method, domain.Kind, domain.Message);
                return ToRpcException(domain);
            case OperationCanceledException when context.CancellationToken.IsCancellationRequested:
                return new RpcException(new Grpc.Core.Status(StatusCode.Cancelled, "The call was cancelled or its deadline passed."));
            case RedisConnectionException or RedisTimeoutException:
                logger.LogWarning(ex, "{Method} failed: Redis unavailable", context.Method);
                return new RpcException(new Grpc.Core.Status(StatusCode.Unavailable, "Market or state store unavailable; retry later."));
            case RpcException rpc when rpc.StatusCode is StatusCode.Unavailable or StatusCode.DeadlineExceeded:
                return new RpcException(new Grpc.Core.Status(StatusCode.Unavailable, $"A downstream service is unavailable: {rpc.Status.Detail}"));
            default:
                logger.LogError(ex, "{Method} failed unexpectedly", context.Method);
                return new RpcException(new Grpc.Core.Status(StatusCode.Internal, "Internal error; see the service log for the trace id " + MeshTelemetry.CurrentTraceId + "."));
        }
    }

    /// <summary>The status a <see cref="DomainException"/> becomes, with BadRequest details for field violations.</summary>
    public static RpcException ToRpcException(DomainException domain)
    {
        var code = domain.Kind switch
        {
            DomainErrorKind.InvalidArgument => Code.InvalidArgument,
            DomainErrorKind.NotFound => Code.NotFound,
            DomainErrorKind.Conflict => Code.Aborted,
            DomainErrorKind.FailedPrecondition => Code.FailedPrecondition,
            DomainErrorKind.ResourceExhausted => Code.ResourceExhausted,
            _ => Code.Internal,
        };
        var status = new Google.Rpc.Status { Code = (int)code, Message = domain.Message };
        if (domain.Violations.Count > 0)
        {
            var badRequest = new BadRequest();
            foreach (var violation in domain.Violations)
            {
                badRequest.FieldViolations.Add(new BadRequest.Types.FieldViolation { Field = violation.Field, Description = violation.Description });
            }

            status.Details.Add(Any.Pack(badRequest));
        }

        return status.ToRpcException();
    }
}
