using RebalanceMesh.ServiceDefaults;

namespace RebalanceMesh.Cli;

/// <summary>
/// Reads the logs the local services write: each service its own JSON-lines log, capped and rotated
/// (<see cref="RotatingFileWriter"/>: planning.log, then planning.1.log, planning.2.log, … older).
/// </summary>
public static class ServiceLogs
{
    private static readonly TimeSpan FollowPoll = TimeSpan.FromMilliseconds(250);

    /// <summary>A service's log files that exist, oldest first, the current one last.</summary>
    public static IReadOnlyList<string> Files(string logFile)
    {
        var rotated = Enumerable.Range(1, 64)
            .Select(generation => RotatingFileWriter.RotatedPath(logFile, generation))
            .TakeWhile(File.Exists)
            .Reverse();
        return [.. rotated, .. File.Exists(logFile) ? [logFile] : Array.Empty<string>()];
    }

    /// <summary>Every line of a service's log, rotated files first.</summary>
    public static IEnumerable<string> ReadAll(string logFile) => Files(logFile).SelectMany(ReadLines);

    /// <summary>The lines of one file, read while its service may be writing (and rotating) it.</summary>
    public static IEnumerable<string> ReadLines(string path)
    {
        using var stream = OpenShared(path);
        using var reader = new StreamReader(stream);
        while (reader.ReadLine() is { } line)
        {
            yield return line;
        }
    }

    /// <summary>
    /// Prints the last <paramref name="lines"/> lines of a service's log (across rotations), then, when
    /// <paramref name="follow"/>, every line written after, across rotations, until cancelled.
    /// </summary>
    public static async Task PrintAsync(string logFile, int lines, bool follow, TextWriter output, CancellationToken cancellationToken)
    {
        var tail = new Queue<string>();
        void Keep(string line)
        {
            tail.Enqueue(line);
            if (tail.Count > lines)
            {
                tail.Dequeue();
            }
        }

        FileStream? current = null;
        try
        {
            foreach (var file in Files(logFile))
            {
                if (file != logFile)
                {
                    foreach (var line in ReadLines(file))
                    {
                        Keep(line);
                    }

                    continue;
                }

                // The current file stays open: following goes on from this handle, so a rotation between printing the
                // tail and following cannot skip what was written to this file in between.
                current = OpenShared(file);
                using var reader = new StreamReader(current, leaveOpen: true);
                while (reader.ReadLine() is { } line)
                {
                    Keep(line);
                }
            }

            foreach (var line in tail)
            {
                output.WriteLine(line);
            }

            if (follow)
            {
                var stream = current;
                current = null;
                await FollowAsync(logFile, stream, output, cancellationToken);
            }
        }
        finally
        {
            current?.Dispose();
        }
    }

    /// <summary>
    /// tail -F: reads what is appended to the open file (<paramref name="stream"/>, or the file once it exists); when
    /// the service rotates it, the open handle reads the rotated file to its end and the new file is then read from its
    /// start, so no line is lost.
    /// </summary>
    private static async Task FollowAsync(string logFile, FileStream? stream, TextWriter output, CancellationToken cancellationToken)
    {
        while (stream is null && !cancellationToken.IsCancellationRequested && !File.Exists(logFile))
        {
            await Delay(cancellationToken);
        }

        if (cancellationToken.IsCancellationRequested)
        {
            stream?.Dispose();
            return;
        }

        stream ??= OpenShared(logFile);
        var reader = new StreamReader(stream);
        try
        {
            var partial = string.Empty;
            while (!cancellationToken.IsCancellationRequested)
            {
                var text = await reader.ReadToEndAsync(cancellationToken);
                if (text.Length > 0)
                {
                    // Only whole lines are printed; a line being written waits for its end.
                    var lines = (partial + text).Split('\n');
                    partial = lines[^1];
                    foreach (var line in lines[..^1])
                    {
                        output.WriteLine(line);
                    }

                    await output.FlushAsync(cancellationToken);
                    continue;
                }

                // At the end of the open file, and the path names a shorter one: the service rotated its log (a new
                // file that outgrew the old within one poll would go unnoticed until the next rotation).
                var current = new FileInfo(logFile);
                if (current.Exists && current.Length < stream.Length)
                {
                    reader.Dispose();
                    stream = OpenShared(logFile);
                    reader = new StreamReader(stream);
                    continue;
                }

                await Delay(cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            reader.Dispose();
        }
    }

    private static Task Delay(CancellationToken cancellationToken) =>
        Task.Delay(FollowPoll, cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);

    private static FileStream OpenShared(string path) =>
        new(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
}
