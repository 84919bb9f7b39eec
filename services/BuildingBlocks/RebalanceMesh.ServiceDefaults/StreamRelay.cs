using System.Threading.Channels;
using Grpc.Core;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// Writes what a watcher's channel delivers to a server stream a burst at a time: every message but the last of a
/// burst (what the channel holds when it is read) is written without a flush, and the last flushes them together — one
/// socket write for a pass's 2,000 alerts instead of 2,000. A message is never held back: the burst ends when the
/// channel is empty, and its last selected message is written with a flush.
/// </summary>
public static class StreamRelay
{
    private static readonly WriteOptions Buffered = new(WriteFlags.BufferHint);
    private static readonly WriteOptions Flushed = new();

    /// <param name="select">The response for a message, or null when the message is not for this watcher.</param>
    /// <param name="last">True when the stream ends after this message (it is written and flushed first).</param>
    public static async Task RelayAsync<T, TResponse>(this ChannelReader<T> reader, IServerStreamWriter<TResponse> writer, Func<T, TResponse?> select, CancellationToken cancellationToken, Func<T, bool>? last = null)
        where TResponse : class
    {
        while (await reader.WaitToReadAsync(cancellationToken))
        {
            TResponse? held = null;
            while (reader.TryRead(out var message))
            {
                if (select(message) is not { } response)
                {
                    continue;
                }

                if (held is not null)
                {
                    writer.WriteOptions = Buffered;
                    await writer.WriteAsync(held, cancellationToken);
                }

                held = response;
                if (last?.Invoke(message) == true)
                {
                    writer.WriteOptions = Flushed;
                    await writer.WriteAsync(held, cancellationToken);
                    return;
                }
            }

            if (held is not null)
            {
                writer.WriteOptions = Flushed;
                await writer.WriteAsync(held, cancellationToken);
            }
        }
    }
}
