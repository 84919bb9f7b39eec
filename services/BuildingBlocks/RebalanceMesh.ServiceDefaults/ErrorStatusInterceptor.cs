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
    private static readonly System.Diagnostics.Metrics.Meter Meter = new("RebalanceMesh.Rpc");
    private static readonly System.Diagnostics.Metrics.Counter<long> Calls = Meter.CreateCounter<long>(
        "rebalancemesh.rpc.server.calls", description: "Completed RPCs by method and gRPC status code (the R and E of RED per RPC).");

    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(
        TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation) =>
        ObserveAsync(context, () => continuation(request, context));

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation) =>
        ObserveAsync(context, () => continuation(requestStream, context));

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(
        TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation) =>
        ObserveAsync(context, async () =>
        {
            await continuation(request, responseStream, context);
            return true;
        });

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(
        IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation) =>
        ObserveAsync(context, async () =>
        {
            await continuation(requestStream, responseStream, context);
            return true;
        });

    /// <summary>Runs a handler, translates its failure, and counts the call by method and final status.</summary>
    private async Task<T> ObserveAsync<T>(ServerCallContext context, Func<Task<T>> handler)
    {
        var code = StatusCode.OK;
        try
        {
            return await handler();
        }
        catch (RpcException rpc)
        {
            code = rpc.StatusCode;
            throw;
        }
        catch (Exception ex)
        {
            var translated = Translate(ex, context);
            code = translated.StatusCode;
            throw translated;
        }
        finally
        {
            Calls.Add(1, new KeyValuePair<string, object?>("rpc.method", context.Method), new KeyValuePair<string, object?>("rpc.grpc.status_code", (int)code));
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
            case not RpcException when context.CancellationToken.IsCancellationRequested:
                // The caller went away or its deadline passed: whatever failed after that (a cancelled wait, a write to
                // a finished stream) is a consequence, not a fault.
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
    public static RpcException ToRpcException(DomainException domain) => ToStatus(domain).ToRpcException();

    /// <summary>
    /// The status one item of a batch ends with when <paramref name="ex"/> ends it, as the item's own call would have:
    /// a domain refusal with its details, or the status of a service the item needed (a deadline it missed counts as
    /// Unavailable). Null when the exception is not the item's own — the batch's call was cancelled, or anything else —
    /// and fails the whole batch.
    /// </summary>
    public static Google.Rpc.Status? ItemStatus(Exception ex, CancellationToken cancellationToken) => ex switch
    {
        DomainException domain => ToStatus(domain),
        RpcException rpc when !cancellationToken.IsCancellationRequested => new Google.Rpc.Status
        {
            Code = (int)(rpc.StatusCode is StatusCode.DeadlineExceeded ? StatusCode.Unavailable : rpc.StatusCode),
            Message = "A service this item needed could not serve it: " + rpc.Status.Detail,
        },
        _ => null,
    };

    /// <summary>The google.rpc.Status of a <see cref="DomainException"/>: its code, message and BadRequest details.</summary>
    public static Google.Rpc.Status ToStatus(DomainException domain)
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

        return status;
    }
}
