using System.Security.Claims;
using System.Security.Cryptography;
using System.Text;
using System.Text.Encodings.Web;
using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>Configuration section <c>Auth</c>.</summary>
public sealed class AuthOptions
{
    /// <summary>On by default; off only for a service that must run without any caller identity (isolated tests).</summary>
    public bool Enabled { get; set; } = true;

    /// <summary>The issuer client tokens must name.</summary>
    public string Issuer { get; set; } = string.Empty;

    /// <summary>The audience client tokens must name.</summary>
    public string Audience { get; set; } = string.Empty;

    /// <summary>HMAC-SHA256 signing keys, base64, at least 32 bytes each; several during a rotation.</summary>
    public List<string> SigningKeys { get; set; } = [];

    /// <summary>The mesh credential: services present it in the <see cref="MeshAuth.MeshTokenHeader"/> header (or Dapr's API token).</summary>
    public string MeshToken { get; set; } = string.Empty;

    /// <summary>Whether client tokens can be verified here: an issuer, an audience and at least one signing key.</summary>
    public bool VerifiesClientTokens => SigningKeys.Any(k => k.Length > 0) && Issuer.Length > 0 && Audience.Length > 0;
}

/// <summary>
/// Authentication and role authorisation for gRPC services. Clients present a JWT bearer token (issuer, audience and
/// signing keys from configuration) whose <c>role</c> claims are viewer, trader or admin (each includes the ones
/// before it); services of the mesh present the mesh credential instead and act as <see cref="Mesh"/>. Each RPC needs
/// a role; no identity is Unauthenticated, too little is PermissionDenied; every decision is logged with the caller.
/// </summary>
public static class MeshAuth
{
    public const string Viewer = "viewer";
    public const string Trader = "trader";
    public const string Admin = "admin";

    /// <summary>A service of the mesh (the mesh credential).</summary>
    public const string Mesh = "mesh";

    public const string MeshTokenHeader = "x-mesh-token";

    /// <summary>Dapr's app API token header, accepted as the mesh credential too.</summary>
    public const string DaprApiTokenHeader = "dapr-api-token";

    /// <summary>The authentication scheme of the mesh credential; only identities it authenticated act as <see cref="Mesh"/>.</summary>
    public const string MeshScheme = "MeshToken";

    /// <summary>Who a call comes from, for logs and audit fields: the token's subject, or "anonymous".</summary>
    public static string CallerOf(ClaimsPrincipal user) => user.FindFirst("sub")?.Value ?? "anonymous";
    private const string SelectorScheme = "MeshOrBearer";

    /// <summary>
    /// What a client role (a JWT's <c>role</c> claim) may also do. Only client roles are known here: a token claiming
    /// <see cref="Mesh"/> (or anything else) grants nothing, since service identity comes only from the mesh credential.
    /// </summary>
    public static IReadOnlySet<string> Implied(string role) => role switch
    {
        Admin => new HashSet<string> { Admin, Trader, Viewer },
        Trader => new HashSet<string> { Trader, Viewer },
        Viewer => new HashSet<string> { Viewer },
        _ => new HashSet<string>(),
    };

    /// <summary>
    /// The roles a caller holds: <see cref="Mesh"/> for an identity the mesh credential authenticated (and nothing else),
    /// the client roles a bearer token's <c>role</c> claims imply for any other. The two never mix: a client token
    /// cannot name itself a service, nor the mesh credential act as a client.
    /// </summary>
    public static IReadOnlySet<string> RolesOf(ClaimsPrincipal user)
    {
        var roles = new HashSet<string>(StringComparer.Ordinal);
        foreach (var identity in user.Identities.Where(i => i.IsAuthenticated))
        {
            if (identity.AuthenticationType == MeshScheme)
            {
                roles.Add(Mesh);
            }
            else
            {
                roles.UnionWith(identity.FindAll("role").SelectMany(c => Implied(c.Value)));
            }
        }

        return roles;
    }

    /// <summary>
    /// Authentication (JWT bearer and the mesh credential) and the role check for every RPC of the host:
    /// <paramref name="requiredRoles"/> maps a full method name ("/package.Service/Method") to the roles that may call
    /// it. Methods not in the map (health, reflection) are open.
    /// </summary>
    public static IHostApplicationBuilder AddMeshAuthentication(this IHostApplicationBuilder builder, IReadOnlyDictionary<string, string[]> requiredRoles)
    {
        var section = builder.Configuration.GetSection("Auth");
        var options = section.Get<AuthOptions>() ?? new AuthOptions();
        builder.Services.Configure<AuthOptions>(section);
        if (!options.Enabled)
        {
            builder.Services.AddSingleton(new RoleRequirements(requiredRoles, Enabled: false));
            return builder;
        }

        if (!options.VerifiesClientTokens && requiredRoles.Values.All(roles => roles.Contains(Mesh)))
        {
            // A service every RPC of which a mesh caller may call (pricing, risk: reads open to client tokens too) runs
            // for mesh callers only when no client signing keys are configured.
            requiredRoles = requiredRoles.ToDictionary(kv => kv.Key, _ => new[] { Mesh });
        }

        var clientRoles = requiredRoles.Values.SelectMany(r => r).Any(r => r != Mesh);
        if (options.MeshToken.Length == 0 && !clientRoles)
        {
            throw new InvalidOperationException("Auth is on but Auth:MeshToken is missing: this service accepts only mesh callers (`rmesh up` generates the credential; see docs/operations.md).");
        }

        builder.Services.AddSingleton(new RoleRequirements(requiredRoles, Enabled: true));
        var authentication = builder.Services.AddAuthentication(clientRoles ? SelectorScheme : MeshScheme)
            .AddScheme<AuthenticationSchemeOptions, MeshTokenHandler>(MeshScheme, _ => { });
        if (!clientRoles)
        {
            // An internal service: only the mesh credential (or Dapr's API token) authenticates.
            return builder;
        }

        if (!options.VerifiesClientTokens)
        {
            throw new InvalidOperationException("Auth is on but Auth:Issuer, Auth:Audience or Auth:SigningKeys is missing (`rmesh up` generates development keys; see docs/operations.md).");
        }

        var keys = options.SigningKeys.Where(k => k.Length > 0).Select(k => new SymmetricSecurityKey(Convert.FromBase64String(k))).ToArray();
        if (keys.Any(k => k.Key.Length < 32))
        {
            throw new InvalidOperationException("Auth:SigningKeys must be at least 32 bytes each.");
        }

        authentication
            .AddPolicyScheme(SelectorScheme, "JWT bearer or mesh credential", o => o.ForwardDefaultSelector = context =>
                context.Request.Headers.ContainsKey(MeshTokenHeader) || context.Request.Headers.ContainsKey(DaprApiTokenHeader) ? MeshScheme : JwtBearerDefaults.AuthenticationScheme)
            .AddJwtBearer(o =>
            {
                o.MapInboundClaims = false;
                o.TokenValidationParameters = new TokenValidationParameters
                {
                    ValidIssuer = options.Issuer,
                    ValidAudience = options.Audience,
                    IssuerSigningKeys = keys,
                    ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
                    RoleClaimType = "role",
                    NameClaimType = "sub",
                    ClockSkew = TimeSpan.FromSeconds(30),
                };
            });
        return builder;
    }

    /// <summary>
    /// Every RPC of the services (all their methods) for mesh callers only: the requirement map of an internal service,
    /// which accepts the mesh credential or Dapr's API token and no client token.
    /// </summary>
    public static IReadOnlyDictionary<string, string[]> MeshOnly(params Google.Protobuf.Reflection.ServiceDescriptor[] services) =>
        services.SelectMany(s => s.Methods).ToDictionary(m => $"/{m.Service.FullName}/{m.Name}", _ => new[] { Mesh });

    /// <summary>
    /// The requirement map of an internal service whose reads clients may call too: every RPC for mesh callers, and its
    /// reads (<see cref="MeshCallResilience.ReadsOf"/>: quotes, valuations, history, every risk figure) also for client
    /// tokens with the viewer role or above. Without client signing keys configured the service is mesh-only.
    /// </summary>
    public static IReadOnlyDictionary<string, string[]> MeshAndClientReads(Google.Protobuf.Reflection.ServiceDescriptor service)
    {
        var reads = MeshCallResilience.ReadsOf(service).ToHashSet(StringComparer.Ordinal);
        return service.Methods.ToDictionary(m => $"/{m.Service.FullName}/{m.Name}", m => reads.Contains(m.Name) ? new[] { Mesh, Viewer } : [Mesh]);
    }

    /// <summary>Authenticates each request (before the gRPC endpoints), when auth is on.</summary>
    public static WebApplication UseMeshAuthentication(this WebApplication app)
    {
        if (app.Services.GetRequiredService<RoleRequirements>().Enabled)
        {
            app.UseAuthentication();
        }

        return app;
    }

    /// <summary>A signed JWT for a subject with a role (development tokens, tests).</summary>
    public static string IssueToken(string base64Key, string issuer, string audience, string subject, string role, TimeSpan lifetime)
    {
        var now = DateTime.UtcNow;
        return new JsonWebTokenHandler().CreateToken(new SecurityTokenDescriptor
        {
            Issuer = issuer,
            Audience = audience,
            IssuedAt = now,
            NotBefore = now,
            Expires = now + lifetime,
            Claims = new Dictionary<string, object> { ["sub"] = subject, ["role"] = role },
            SigningCredentials = new SigningCredentials(new SymmetricSecurityKey(Convert.FromBase64String(base64Key)), SecurityAlgorithms.HmacSha256),
        });
    }

    /// <summary>Call credentials that put a bearer token and/or the mesh credential on every call of a client channel.</summary>
    public static CallCredentials ClientCredentials(string? bearerToken, string? meshToken = null) =>
        CallCredentials.FromInterceptor((_, metadata) =>
        {
            if (!string.IsNullOrEmpty(bearerToken))
            {
                metadata.Add("Authorization", "Bearer " + bearerToken);
            }

            if (!string.IsNullOrEmpty(meshToken))
            {
                metadata.Add(MeshTokenHeader, meshToken);
            }

            return Task.CompletedTask;
        });

    /// <summary>A new random signing key (256 bits, base64) or mesh credential.</summary>
    public static string NewSecret() => Convert.ToBase64String(RandomNumberGenerator.GetBytes(32));
}

/// <summary>The roles each RPC needs, and whether auth is on.</summary>
public sealed record RoleRequirements(IReadOnlyDictionary<string, string[]> Methods, bool Enabled);

/// <summary>Authenticates a request carrying the mesh credential (constant-time comparison).</summary>
public sealed class MeshTokenHandler(IOptionsMonitor<AuthenticationSchemeOptions> options, ILoggerFactory logger, UrlEncoder encoder, IOptions<AuthOptions> auth)
    : AuthenticationHandler<AuthenticationSchemeOptions>(options, logger, encoder)
{
    protected override Task<AuthenticateResult> HandleAuthenticateAsync()
    {
        var presented = Request.Headers[MeshAuth.MeshTokenHeader].FirstOrDefault() ?? Request.Headers[MeshAuth.DaprApiTokenHeader].FirstOrDefault();
        var expected = auth.Value.MeshToken;
        if (presented is null)
        {
            return Task.FromResult(AuthenticateResult.NoResult());
        }

        if (expected.Length == 0 || !CryptographicOperations.FixedTimeEquals(Encoding.UTF8.GetBytes(presented), Encoding.UTF8.GetBytes(expected)))
        {
            return Task.FromResult(AuthenticateResult.Fail("The mesh credential does not match."));
        }

        // No role claim: what the mesh may do follows from the scheme that authenticated it (MeshAuth.RolesOf).
        var identity = new ClaimsIdentity([new Claim("sub", "mesh-service")], MeshAuth.MeshScheme, "sub", "role");
        return Task.FromResult(AuthenticateResult.Success(new AuthenticationTicket(new ClaimsPrincipal(identity), Scheme.Name)));
    }
}

/// <summary>
/// The role check of every RPC in <see cref="RoleRequirements"/>: Unauthenticated without an identity,
/// PermissionDenied without a role the method accepts; each decision logged with the caller's identity (audit).
/// </summary>
public sealed class RoleAuthorizationInterceptor(RoleRequirements requirements, ILogger<RoleAuthorizationInterceptor> logger) : Interceptor
{
    public override Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, context);
    }

    public override Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(request, responseStream, context);
    }

    public override Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(requestStream, context);
    }

    public override Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        Authorize(context);
        return continuation(requestStream, responseStream, context);
    }

    private void Authorize(ServerCallContext context)
    {
        if (!requirements.Enabled || !requirements.Methods.TryGetValue(context.Method, out var accepted))
        {
            return;
        }

        var user = context.GetHttpContext().User;
        var caller = MeshAuth.CallerOf(user);
        if (user.Identity?.IsAuthenticated != true)
        {
            logger.LogWarning("Denied {Method}: no valid credentials (caller {Caller}, peer {Peer})", context.Method, caller, context.Peer);
            throw new RpcException(new Status(StatusCode.Unauthenticated, "A bearer token or the mesh credential is required."));
        }

        var roles = MeshAuth.RolesOf(user);
        if (!accepted.Any(roles.Contains))
        {
            logger.LogWarning("Denied {Method} to {Caller} with roles {Roles}: needs one of {Accepted}", context.Method, caller, string.Join(",", roles), string.Join(",", accepted));
            throw new RpcException(new Status(StatusCode.PermissionDenied, $"{context.Method} needs the role {string.Join(" or ", accepted)}."));
        }

        // Who called is on the call's span (enduser.id); a log line per allowed call was most of a busy service's log.
        System.Diagnostics.Activity.Current?.SetTag("enduser.id", caller);
        logger.LogDebug("Allowed {Method} to {Caller}", context.Method, caller);
    }
}
