using Dapr;
using Google.Protobuf;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace RebalanceMesh.EventBus;

/// <summary>Registration of the event bus and its subscriptions.</summary>
public static class EventBusExtensions
{
    /// <summary>Route prefix daprd posts subscribed events to.</summary>
    public const string DaprRoutePrefix = "/events/";

    /// <summary>
    /// Adds <see cref="IEventBus"/> with the adapter named by <c>EventBus:Provider</c> (redis, dapr, inmemory)
    /// and the consumer that feeds this host's subscriptions.
    /// </summary>
    public static IHostApplicationBuilder AddEventBus(this IHostApplicationBuilder builder, string appId)
    {
        builder.Services.AddOptions<EventBusOptions>()
            .Bind(builder.Configuration.GetSection("EventBus"))
            .PostConfigure(o =>
            {
                o.AppId = string.IsNullOrWhiteSpace(o.AppId) ? appId : o.AppId;
                o.ConsumerName = string.IsNullOrWhiteSpace(o.ConsumerName) ? builder.Configuration["Mesh:InstanceId"] ?? string.Empty : o.ConsumerName;
            });
        builder.Services.TryAddSingleton(TimeProvider.System);
        builder.Services.AddSingleton<EventDispatcher>();

        var provider = (builder.Configuration["EventBus:Provider"] ?? "redis").ToLowerInvariant();
        switch (provider)
        {
            case "redis":
                builder.Services.AddSingleton<IEventBus, RedisStreamsEventBus>();
                builder.Services.AddHostedService<RedisStreamsConsumer>();
                break;
            case "dapr":
                builder.Services.AddDaprClient();
                builder.Services.AddSingleton<IEventBus, DaprEventBus>();
                break;
            case "inmemory":
                builder.Services.AddSingleton<InMemoryEventBus>();
                builder.Services.AddSingleton<IEventBus>(sp => sp.GetRequiredService<InMemoryEventBus>());
                builder.Services.AddHostedService<InMemoryEventPump>();
                break;
            default:
                throw new InvalidOperationException($"EventBus:Provider '{provider}' is not one of redis, dapr, inmemory.");
        }

        return builder;
    }

    /// <summary>
    /// Subscribes <typeparamref name="THandler"/> to <paramref name="topic"/>; <paramref name="orderingKey"/> names the key
    /// (a portfolio, a plan) whose events the handler needs one at a time and in order.
    /// </summary>
    public static IServiceCollection AddEventSubscription<T, THandler>(this IServiceCollection services, string topic, Func<T, string>? orderingKey = null)
        where T : IMessage<T>, new()
        where THandler : class, IEventHandler<T>
    {
        services.AddScoped<THandler>();
        services.AddSingleton(EventSubscription.For<T, THandler>(topic, orderingKey));
        return services;
    }

    /// <summary>
    /// With the Dapr adapter, serves the subscriptions the way daprd delivers them: <c>GET /dapr/subscribe</c> lists
    /// the topics, and each topic's CloudEvents arrive as HTTP POSTs answered with Dapr's SUCCESS/RETRY/DROP.
    /// Other adapters map nothing here.
    /// </summary>
    public static IEndpointRouteBuilder MapEventSubscriptions(this IEndpointRouteBuilder app)
    {
        var configuration = app.ServiceProvider.GetRequiredService<IConfiguration>();
        if (!string.Equals(configuration["EventBus:Provider"], "dapr", StringComparison.OrdinalIgnoreCase))
        {
            return app;
        }

        var options = app.ServiceProvider.GetRequiredService<IOptions<EventBusOptions>>().Value;
        var dispatcher = app.ServiceProvider.GetRequiredService<EventDispatcher>();
        foreach (var subscription in dispatcher.Subscriptions)
        {
            var topic = subscription.Topic;
            app.MapPost(DaprRoutePrefix + topic, async (HttpContext http, EventDispatcher events) =>
                {
                    using var buffer = new MemoryStream();
                    await http.Request.Body.CopyToAsync(buffer, http.RequestAborted);
                    var outcome = await events.DispatchAsync(topic, buffer.ToArray(), 1, http.RequestAborted);
                    return Results.Json(new { status = outcome.ToString().ToUpperInvariant() });
                })
                .WithTopic(new TopicOptions { PubsubName = options.PubSubName, Name = topic, DeadLetterTopic = Topics.DeadLetter(topic) })
                .WithName("dapr-" + topic);
        }

        app.MapSubscribeHandler();
        return app;
    }
}
