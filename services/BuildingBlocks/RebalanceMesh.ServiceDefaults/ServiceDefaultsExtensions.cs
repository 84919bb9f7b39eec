using Microsoft.Extensions.DependencyInjection.Extensions;
using Grpc.Net.ClientFactory;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Diagnostics.HealthChecks;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using OpenTelemetry;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;
using StackExchange.Redis;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>The one call every host makes: telemetry, health, reflection, errors, Redis, gRPC.</summary>
public static class ServiceDefaultsExtensions
{
    /// <summary>Health-check tag of checks that gate readiness (dependencies such as Redis).</summary>
    public const string ReadyTag = "ready";

    /// <summary>Tag of the checks that only say the process is alive (no dependencies).</summary>
    public const string LiveTag = "live";

    /// <summary>Where every service answers Prometheus scrapes (its HTTP port; Telemetry:Prometheus false turns it off).</summary>
    public const string MetricsPath = "/metrics";

    /// <summary>Largest gRPC message a host accepts or sends.</summary>
    public const int MaxMessageBytes = 16 * 1024 * 1024;

    /// <summary>
    /// Adds OpenTelemetry (traces, metrics, logs; OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set, a Prometheus scrape
    /// endpoint, a JSON-lines span file when Telemetry:SpanFile is set; see <see cref="TelemetrySettings"/>), gRPC with the error interceptor, reflection, gRPC and HTTP
    /// health with a Redis readiness check, and the shared Redis connection.
    /// </summary>
    public static IHostApplicationBuilder AddServiceDefaults(this IHostApplicationBuilder builder, string serviceName)
    {
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            // gRPC server spans carry rpc.* attributes only when this switch is on.
            ["OTEL_DOTNET_EXPERIMENTAL_ASPNETCORE_ENABLE_GRPC_INSTRUMENTATION"] =
                builder.Configuration["OTEL_DOTNET_EXPERIMENTAL_ASPNETCORE_ENABLE_GRPC_INSTRUMENTATION"] ?? "true",
        });

        builder.AddMeshTelemetry(serviceName);
        builder.AddRedisConnection();

        builder.Services.AddSingleton<ErrorStatusInterceptor>();
        builder.Services.AddGrpc(options =>
        {
            options.Interceptors.Add<ErrorStatusInterceptor>();
            options.Interceptors.Add<RoleAuthorizationInterceptor>();
            options.Interceptors.Add<RequiredDeadlineInterceptor>();
            options.MaxReceiveMessageSize = MaxMessageBytes;
            options.MaxSendMessageSize = MaxMessageBytes;
            options.EnableDetailedErrors = false;
        });
        builder.Services.AddMalformedRequestGuard();
        builder.Services.TryAddSingleton(new RoleRequirements(new Dictionary<string, string[]>(), Enabled: false));
        builder.Services.TryAddTimeProvider();
        builder.Services.AddSingleton<RedisHealthCheck>(); // one instance: it keeps its last result for a second
        builder.Services.AddGrpcReflection();
        builder.Services.AddGrpcHealthChecks()
            .AddCheck("self", () => HealthCheckResult.Healthy(), [LiveTag])
            .AddCheck<RedisHealthCheck>("redis", tags: [ReadyTag]);
        // gRPC health answers from the results the health check publisher refreshes every second (the readiness figure
        // is at most 1 s old, as RedisHealthCheck's own cache), not by running the checks on every probe call.
        builder.Services.Configure<HealthCheckPublisherOptions>(options =>
        {
            options.Delay = TimeSpan.Zero;
            options.Period = TimeSpan.FromSeconds(1);
        });
        builder.Services.Configure<Grpc.AspNetCore.HealthChecks.GrpcHealthChecksOptions>(options =>
        {
            options.UseHealthChecksCache = true;
            // The overall service ("") and "readiness" serve only when Redis answers; "liveness" only says the process
            // runs (Kubernetes' gRPC probes name these services, so a Redis outage never restarts a pod).
            options.Services.Map(string.Empty, result => result.Tags.Contains(ReadyTag) || result.Tags.Contains(LiveTag));
            options.Services.Map("readiness", result => result.Tags.Contains(ReadyTag) || result.Tags.Contains(LiveTag));
            options.Services.Map("liveness", result => result.Tags.Contains(LiveTag));
        });
        return builder;
    }

    private static void AddMeshTelemetry(this IHostApplicationBuilder builder, string serviceName)
    {
        var settings = TelemetrySettings.From(builder.Configuration);
        builder.Services.AddSingleton(settings);
        if (settings.LogFile is { } logFile)
        {
            // The JSON console log goes to a capped, rotated file instead of an ever-growing redirect of stdout.
            var writer = new RotatingFileWriter(logFile, settings.LogFileMaxBytes, settings.LogFileKeep) { AutoFlush = true };
            Console.SetOut(writer);
            Console.SetError(writer);
        }

        builder.Logging.ClearProviders();
        builder.Logging.AddJsonConsole(options =>
        {
            options.IncludeScopes = true;
            options.TimestampFormat = "O";
            options.UseUtcTimestamp = true;
        });
        builder.Logging.AddOpenTelemetry(options =>
        {
            options.IncludeFormattedMessage = true;
            options.IncludeScopes = true;
        });

        var instanceId = builder.Configuration["Mesh:InstanceId"] ?? Environment.MachineName + "-" + Environment.ProcessId;
        var otel = builder.Services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(serviceName, serviceNamespace: "rebalancemesh", serviceInstanceId: instanceId))
            .WithTracing(tracing =>
            {
                // Parent-based: a span follows its parent's decision (also across services, through traceparent in
                // gRPC metadata and in events), so a sampled rebalance keeps its whole trace; only roots are drawn.
                tracing.SetSampler(new ParentBasedSampler(new TraceIdRatioBasedSampler(settings.SampleRatio)));
                tracing.AddSource(MeshTelemetry.Prefix + ".*")
                    .AddAspNetCoreInstrumentation(options =>
                    {
                        // Health probes and scrapes are noise in traces.
                        options.Filter = context => !context.Request.Path.StartsWithSegments("/health")
                            && !context.Request.Path.StartsWithSegments(MetricsPath)
                            && !context.Request.Path.StartsWithSegments("/grpc.health.v1.Health");
                    })
                    .AddGrpcClientInstrumentation()
                    .AddHttpClientInstrumentation();

                // A span per Redis command is most of a busy service's spans and a share of its CPU (a breach storm
                // issues ~160 commands per plan in execution): off unless Telemetry:RedisCommands asks for them.
                if (settings.RedisCommands)
                {
                    tracing.AddRedisInstrumentation(options => options.SetVerboseDatabaseStatements = false);
                }

                if (settings.SpanFile is { } spanFile)
                {
                    tracing.AddProcessor(new SimpleActivityExportProcessor(new JsonLinesSpanExporter(spanFile, serviceName, settings.SpanFileMaxBytes, settings.SpanFileKeep)));
                }
            })
            .WithMetrics(metrics =>
            {
                metrics
                    .AddMeter(MeshTelemetry.Prefix + ".*")
                    .AddAspNetCoreInstrumentation()
                    .AddHttpClientInstrumentation()
                    .AddRuntimeInstrumentation();
                if (settings.Prometheus)
                {
                    metrics.AddPrometheusExporter();
                }
            });

        if (!string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
        {
            otel.UseOtlpExporter();
        }
    }

    private static void AddRedisConnection(this IHostApplicationBuilder builder)
    {
        builder.Services.AddSingleton<IConnectionMultiplexer>(_ =>
            ConnectionMultiplexer.Connect(RedisOptions(RedisConnectionString(builder.Configuration), builder.Environment.ApplicationName)));
        builder.Services.AddHostedService<RedisConnectOnStart>();
    }

    /// <summary>
    /// How every host connects to Redis: it keeps trying to connect rather than fail at start, and while Redis is
    /// unreachable a command fails at once (RedisConnectionException: Unavailable to the caller) instead of waiting in
    /// the reconnect backlog for its 5 s timeout, past most callers' deadlines.
    /// </summary>
    public static ConfigurationOptions RedisOptions(string connectionString, string clientName)
    {
        var options = ConfigurationOptions.Parse(connectionString);
        options.AbortOnConnectFail = false;
        options.ClientName = clientName;
        options.BacklogPolicy = BacklogPolicy.FailFast;
        return options;
    }

    /// <summary>Connection string of the mesh's Redis: ConnectionStrings:redis, default 127.0.0.1:6379.</summary>
    public static string RedisConnectionString(IConfiguration configuration) =>
        configuration.GetConnectionString("redis") ?? "127.0.0.1:6379";

    /// <summary>
    /// Registers a typed gRPC client for another mesh service. Its address is Services:{name}:Grpc; calls
    /// get a default deadline and inherit the deadline and cancellation of the server call they serve; reads of
    /// <paramref name="service"/> are retried on UNAVAILABLE and every call goes through the callee's circuit breaker
    /// (<see cref="MeshCallResilience"/>).
    /// </summary>
    public static IHttpClientBuilder AddMeshGrpcClient<TClient>(this IHostApplicationBuilder builder, string serviceName, Google.Protobuf.Reflection.ServiceDescriptor service)
        where TClient : class
    {
        var key = $"Services:{serviceName}:Grpc";
        var retries = MeshCallResilience.RetryReads(service);
        builder.Services.TryAddSingleton<MeshCircuitBreakers>();
        return builder.Services.AddGrpcClient<TClient>(options =>
            {
                var address = builder.Configuration[key]
                    ?? throw new InvalidOperationException($"Configuration '{key}' is required to call the {serviceName} service.");
                options.Address = new Uri(address);
            })
            .ConfigureChannel(channel =>
            {
                channel.MaxReceiveMessageSize = MaxMessageBytes;
                channel.MaxSendMessageSize = MaxMessageBytes;
                channel.MaxRetryAttempts = MeshCallResilience.ReadAttempts;
                channel.ServiceConfig = retries;
                channel.InitialReconnectBackoff = MeshCallResilience.InitialReconnectBackoff;
                channel.MaxReconnectBackoff = MeshCallResilience.MaxReconnectBackoff;
            })
            .AddInterceptor(() => new DefaultDeadlineInterceptor(TimeSpan.FromSeconds(10)))
            .AddInterceptor(provider => provider.GetRequiredService<MeshCircuitBreakers>().For(serviceName))
            .AddInterceptor(() => new MeshCredentialInterceptor(builder.Configuration["Auth:MeshToken"]))
            .EnableCallContextPropagation(options => options.SuppressContextNotFoundErrors = true);
    }

    /// <summary>Maps gRPC health and reflection, the HTTP probes /health/live and /health/ready, and /metrics for Prometheus.</summary>
    public static IEndpointRouteBuilder MapDefaultEndpoints(this IEndpointRouteBuilder app)
    {
        if (app.ServiceProvider.GetRequiredService<TelemetrySettings>().Prometheus)
        {
            app.MapPrometheusScrapingEndpoint(MetricsPath);
        }

        app.MapGrpcHealthChecksService();
        app.MapGrpcReflectionService();
        app.MapHealthChecks("/health/live", new HealthCheckOptions { Predicate = check => check.Tags.Contains(LiveTag) });
        app.MapHealthChecks("/health/ready", new HealthCheckOptions { Predicate = check => check.Tags.Contains(ReadyTag) });
        return app;
    }
}
