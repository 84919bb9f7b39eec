using Grpc.Core;
using Grpc.Net.Client;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.AspNetCore.TestHost;
using Microsoft.Extensions.DependencyInjection;
using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Testing;

/// <summary>
/// A service host on ASP.NET's in-process test server, configured against a real Redis, with gRPC channels over
/// the test server's handler (the grpc-dotnet tester pattern).
/// </summary>
public sealed class GrpcTestServer<TProgram> : WebApplicationFactory<TProgram>
    where TProgram : class
{
    private readonly IReadOnlyDictionary<string, string?> _settings;
    private readonly Action<IServiceCollection>? _services;

    /// <param name="services">Test-only service changes applied after the host's own (a fake clock, a client routed to another in-process server).</param>
    public GrpcTestServer(RedisServer redis, IReadOnlyDictionary<string, string?>? settings = null, Action<IServiceCollection>? services = null)
    {
        _services = services;
        var all = new Dictionary<string, string?>
        {
            ["ConnectionStrings:redis"] = redis.ConnectionString,
            ["EventBus:Provider"] = "inmemory",
            ["Logging:LogLevel:Default"] = "Warning",
        };
        foreach (var (key, value) in TestAuth.Settings)
        {
            all[key] = value;
        }

        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            all[key] = value;
        }

        _settings = all;
    }

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        foreach (var (key, value) in _settings)
        {
            builder.UseSetting(key, value);
        }

        if (_services is not null)
        {
            builder.ConfigureTestServices(_services);
        }
    }

    /// <summary>
    /// Calls over the test server's handler carrying <paramref name="bearerToken"/> and/or the mesh credential
    /// <paramref name="meshToken"/>; every unary call gets a 30 s deadline unless <paramref name="defaultDeadline"/> is
    /// false (the services refuse unary calls without one).
    /// </summary>
    public CallInvoker CreateInvoker(string? bearerToken = null, string? meshToken = null, bool defaultDeadline = true)
    {
        var options = new GrpcChannelOptions { HttpHandler = Server.CreateHandler() };
        if (bearerToken is not null || meshToken is not null)
        {
            options.Credentials = ChannelCredentials.Create(ChannelCredentials.Insecure, MeshAuth.ClientCredentials(bearerToken, meshToken));
            options.UnsafeUseInsecureChannelCallCredentials = true;
        }

        var channel = GrpcChannel.ForAddress(Server.BaseAddress, options);
        return defaultDeadline ? channel.WithDefaultDeadline() : channel.CreateCallInvoker();
    }

    /// <summary>Calls as a service of the mesh (the test mesh credential), which internal services require.</summary>
    public CallInvoker CreateMeshInvoker() => CreateInvoker(meshToken: TestAuth.MeshToken);
}

/// <summary>A test issuer: settings that turn a service's authentication on, and tokens it accepts.</summary>
public static class TestAuth
{
    public const string Issuer = "rebalancemesh-tests";
    public const string Audience = "rebalancemesh-planning";

    /// <summary>Fixed per test run, generated: no secret lives in the repository.</summary>
    public static string SigningKey { get; } = MeshAuth.NewSecret();

    public static string MeshToken { get; } = MeshAuth.NewSecret();

    public static IReadOnlyDictionary<string, string?> Settings { get; } = new Dictionary<string, string?>
    {
        ["Auth:Issuer"] = Issuer,
        ["Auth:Audience"] = Audience,
        ["Auth:SigningKeys:0"] = SigningKey,
        ["Auth:MeshToken"] = MeshToken,
    };

    public static string Token(string role, string subject = "tester", TimeSpan? lifetime = null, string? key = null, string issuer = Issuer) =>
        MeshAuth.IssueToken(key ?? SigningKey, issuer, Audience, subject, role, lifetime ?? TimeSpan.FromHours(1));
}

/// <summary>Assertions on gRPC statuses.</summary>
public static class RpcAssert
{
    /// <summary>Asserts InvalidArgument with a google.rpc.BadRequest naming <paramref name="field"/>; returns all violated fields.</summary>
    public static async Task<IReadOnlyList<string>> InvalidArgumentAsync(Func<Task> call, string field)
    {
        var ex = await Xunit.Assert.ThrowsAsync<RpcException>(call);
        Xunit.Assert.Equal(StatusCode.InvalidArgument, ex.StatusCode);
        var status = ex.GetRpcStatus();
        Xunit.Assert.NotNull(status);
        var badRequest = status!.GetDetail<Google.Rpc.BadRequest>();
        Xunit.Assert.NotNull(badRequest);
        var fields = badRequest!.FieldViolations.Select(v => v.Field).ToArray();
        Xunit.Assert.Contains(field, fields);
        return fields;
    }

    public static async Task<RpcException> StatusAsync(Func<Task> call, StatusCode expected)
    {
        var ex = await Xunit.Assert.ThrowsAsync<RpcException>(call);
        Xunit.Assert.Equal(expected, ex.StatusCode);
        return ex;
    }
}

/// <summary>Paths inside the repository.</summary>
public static class RepoPaths
{
    public static string Root
    {
        get
        {
            for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            {
                if (File.Exists(Path.Combine(dir.FullName, "RebalanceMesh.sln")))
                {
                    return dir.FullName;
                }
            }

            throw new InvalidOperationException("RebalanceMesh.sln not found above the test directory.");
        }
    }
}
