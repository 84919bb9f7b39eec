namespace RebalanceMesh.Pricing.Core;

/// <summary>
/// Keeps only the newest value per key between flushes, so a fast feed produces at most one event per
/// publish interval carrying each changed instrument once.
/// </summary>
public sealed class QuoteCoalescer<T>
{
    private readonly Lock _gate = new();
    private Dictionary<string, T> _pending = new(StringComparer.Ordinal);

    public void Add(string key, T value)
    {
        lock (_gate)
        {
            _pending[key] = value;
        }
    }

    /// <summary>Puts back a value that could not be delivered, unless a newer one arrived meanwhile.</summary>
    public void Restore(string key, T value)
    {
        lock (_gate)
        {
            _pending.TryAdd(key, value);
        }
    }

    /// <summary>Takes everything added since the last flush, ordered by key; empty when nothing changed.</summary>
    public IReadOnlyList<T> Flush()
    {
        Dictionary<string, T> taken;
        lock (_gate)
        {
            if (_pending.Count == 0)
            {
                return [];
            }

            taken = _pending;
            _pending = new Dictionary<string, T>(StringComparer.Ordinal);
        }

        return taken.OrderBy(kv => kv.Key, StringComparer.Ordinal).Select(kv => kv.Value).ToArray();
    }
}
