using Google.Protobuf;
using Microsoft.Extensions.DependencyInjection;

namespace RebalanceMesh.EventBus;

/// <summary>
/// A topic and the handler that consumes it; registered with <see cref="EventBusExtensions.AddEventSubscription{T,THandler}"/>.
/// Events are delivered concurrently (<see cref="EventBusOptions.Concurrency"/>); an ordering key, when the handler
/// needs one (a portfolio, a plan), keeps the events of one key one at a time, in order where the adapter can.
/// </summary>
public sealed class EventSubscription
{
    private readonly Func<CloudEventEnvelope, IMessage> _read;
    private readonly Func<IMessage, string?> _key;
    private readonly Func<IServiceProvider, IMessage, EventContext, CancellationToken, Task> _handle;
    private readonly Func<IServiceProvider, IReadOnlyList<(IMessage Message, EventContext Context)>, CancellationToken, Task>? _handleBatch;

    private EventSubscription(
        string topic,
        string messageType,
        Func<CloudEventEnvelope, IMessage> read,
        Func<IMessage, string?> key,
        Func<IServiceProvider, IMessage, EventContext, CancellationToken, Task> handle,
        Func<IServiceProvider, IReadOnlyList<(IMessage Message, EventContext Context)>, CancellationToken, Task>? handleBatch)
    {
        Topic = topic;
        MessageType = messageType;
        _read = read;
        _key = key;
        _handle = handle;
        _handleBatch = handleBatch;
    }

    public string Topic { get; }

    /// <summary>Full protobuf name of the message the topic carries.</summary>
    public string MessageType { get; }

    /// <summary>Whether the handler takes several events at once (<see cref="IEventBatchHandler{T}"/>).</summary>
    public bool Batches => _handleBatch is not null;

    /// <param name="orderingKey">The key whose events must be handled one at a time and in order; null: none.</param>
    public static EventSubscription For<T, THandler>(string topic, Func<T, string>? orderingKey = null)
        where T : IMessage<T>, new()
        where THandler : IEventHandler<T>
    {
        var parser = new MessageParser<T>(() => new T());
        return new EventSubscription(
            topic,
            new T().Descriptor.FullName,
            envelope => envelope.ReadData(parser),
            message => orderingKey is null ? null : orderingKey((T)message),
            (services, message, context, ct) => services.GetRequiredService<THandler>().HandleAsync((T)message, context, ct),
            typeof(IEventBatchHandler<T>).IsAssignableFrom(typeof(THandler))
                ? (services, events, ct) => ((IEventBatchHandler<T>)services.GetRequiredService<THandler>()).HandleBatchAsync(
                    events.Select(e => new DeliveredEvent<T>((T)e.Message, e.Context)).ToArray(), ct)
                : null);
    }

    /// <summary>The event's message; a MalformedEventException when its data is not one.</summary>
    internal IMessage Read(CloudEventEnvelope envelope) => _read(envelope);

    /// <summary>The message's ordering key, or null.</summary>
    internal string? KeyOf(IMessage message) => _key(message) is { Length: > 0 } key ? key : null;

    internal Task HandleAsync(IServiceProvider scopedServices, IMessage message, EventContext context, CancellationToken ct) =>
        _handle(scopedServices, message, context, ct);

    /// <summary>Hands several events to a batch handler; only when <see cref="Batches"/>.</summary>
    internal Task HandleBatchAsync(IServiceProvider scopedServices, IReadOnlyList<(IMessage Message, EventContext Context)> events, CancellationToken ct) =>
        (_handleBatch ?? throw new InvalidOperationException($"The handler of {Topic} takes one event at a time."))(scopedServices, events, ct);
}

/// <summary>One async lock per key, created on first use and dropped when nobody holds or waits for it.</summary>
internal sealed class KeyedLock
{
    private readonly Dictionary<string, (SemaphoreSlim Gate, int Users)> _gates = new(StringComparer.Ordinal);

    /// <summary>
    /// Every distinct key's lock, taken in one (ordinal) order so that two holders of overlapping keys cannot deadlock;
    /// disposing releases them all. A failure part way releases what was taken.
    /// </summary>
    public async Task<IDisposable> AcquireAllAsync(IEnumerable<string> keys, CancellationToken cancellationToken)
    {
        var held = new List<IDisposable>();
        try
        {
            foreach (var key in keys.Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal))
            {
                held.Add(await AcquireAsync(key, cancellationToken).ConfigureAwait(false));
            }
        }
        catch
        {
            held.ForEach(h => h.Dispose());
            throw;
        }

        return new All(held);
    }

    private async Task<IDisposable> AcquireAsync(string key, CancellationToken cancellationToken)
    {
        SemaphoreSlim gate;
        lock (_gates)
        {
            var entry = _gates.TryGetValue(key, out var found) ? found : (new SemaphoreSlim(1, 1), 0);
            _gates[key] = (entry.Item1, entry.Item2 + 1);
            gate = entry.Item1;
        }

        try
        {
            await gate.WaitAsync(cancellationToken).ConfigureAwait(false);
        }
        catch
        {
            Leave(key);
            throw;
        }

        return new Holder(this, key, gate);
    }

    private void Leave(string key)
    {
        lock (_gates)
        {
            var (gate, users) = _gates[key];
            if (users <= 1)
            {
                _gates.Remove(key);
                gate.Dispose();
            }
            else
            {
                _gates[key] = (gate, users - 1);
            }
        }
    }

    private sealed class All(List<IDisposable> held) : IDisposable
    {
        public void Dispose() => held.ForEach(h => h.Dispose());
    }

    private sealed class Holder(KeyedLock owner, string key, SemaphoreSlim gate) : IDisposable
    {
        private int _released;

        public void Dispose()
        {
            if (Interlocked.Exchange(ref _released, 1) == 0)
            {
                gate.Release();
                owner.Leave(key);
            }
        }
    }
}
