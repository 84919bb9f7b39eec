namespace RebalanceMesh.Planning;

/// <summary>
/// A wake-up that coalesces: any number of <see cref="Set"/> calls before a wait let exactly one wait through. A wait
/// with a timeout runs on the host's <see cref="TimeProvider"/>.
/// </summary>
public sealed class WakeSignal(TimeProvider? time = null) : IDisposable
{
    private readonly SemaphoreSlim _signal = new(0, 1);

    public void Set()
    {
        try
        {
            _signal.Release();
        }
        catch (SemaphoreFullException)
        {
            // already set: the waiter wakes once for all of them
        }
    }

    /// <summary>True when set (and now reset); false after <paramref name="timeout"/>.</summary>
    public async Task<bool> WaitAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (timeout == Timeout.InfiniteTimeSpan)
        {
            await _signal.WaitAsync(cancellationToken);
            return true;
        }

        using var timer = new CancellationTokenSource(timeout, time ?? TimeProvider.System);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timer.Token);
        try
        {
            await _signal.WaitAsync(linked.Token);
            return true;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    public void Dispose() => _signal.Dispose();
}
