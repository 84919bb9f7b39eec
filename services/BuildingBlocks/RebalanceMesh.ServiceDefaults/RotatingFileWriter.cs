using System.Text;

namespace RebalanceMesh.ServiceDefaults;

/// <summary>
/// A text file that never grows past about <see cref="MaxBytes"/>: once a line ends beyond it, the file becomes
/// <c>{name}.1{ext}</c> (the one before that <c>{name}.2{ext}</c>, … up to <see cref="Keep"/>; the oldest is deleted)
/// and writing goes on in a new, empty file. Lines are never split across files. Thread-safe; one writer per file
/// (a service instance's log or span file). With <see cref="AutoFlush"/> every write reaches the file at once (logs,
/// which a crash must not lose); otherwise on <see cref="Flush"/> (spans, flushed per exported batch).
/// </summary>
public sealed class RotatingFileWriter : TextWriter
{
    private static readonly Encoding Utf8 = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false);
    private readonly Lock _gate = new();
    private readonly string _path;
    private StreamWriter _writer;
    private long _length;
    private bool _disposed;

    /// <param name="maxBytes">Size past which the file is rotated at the end of a line (at least 1 KiB).</param>
    /// <param name="keep">Rotated files kept besides the current one (0: the current file is truncated instead).</param>
    public RotatingFileWriter(string path, long maxBytes, int keep)
    {
        _path = Path.GetFullPath(path);
        MaxBytes = Math.Max(maxBytes, 1024);
        Keep = Math.Max(keep, 0);
        Directory.CreateDirectory(Path.GetDirectoryName(_path)!);
        (_writer, _length) = Open(_path);
    }

    public long MaxBytes { get; }

    public int Keep { get; }

    public bool AutoFlush { get; init; }

    /// <summary>How many times this writer has rotated its file.</summary>
    public int Rotations { get; private set; }

    public override Encoding Encoding => Utf8;

    /// <summary>The name the <paramref name="generation"/>-th older file of <paramref name="path"/> has: planning.log → planning.1.log.</summary>
    public static string RotatedPath(string path, int generation) =>
        Path.Combine(Path.GetDirectoryName(path) ?? string.Empty, $"{Path.GetFileNameWithoutExtension(path)}.{generation}{Path.GetExtension(path)}");

    public override void Write(char value) => Append(new ReadOnlySpan<char>(in value), newline: false);

    public override void Write(string? value) => Append(value, newline: false);

    public override void Write(char[] buffer, int index, int count) => Append(buffer.AsSpan(index, count), newline: false);

    public override void Write(ReadOnlySpan<char> buffer) => Append(buffer, newline: false);

    public override void WriteLine(string? value) => Append(value, newline: true);

    public override void Flush()
    {
        lock (_gate)
        {
            if (!_disposed)
            {
                _writer.Flush();
            }
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            lock (_gate)
            {
                if (!_disposed)
                {
                    _disposed = true;
                    _writer.Dispose();
                }
            }
        }

        base.Dispose(disposing);
    }

    /// <summary>
    /// Every write comes here: the text (and a newline) under one lock, its bytes counted, flushed when
    /// <see cref="AutoFlush"/>, and the file rotated when a line ends past <see cref="MaxBytes"/>.
    /// </summary>
    private void Append(ReadOnlySpan<char> text, bool newline)
    {
        if (text.IsEmpty && !newline)
        {
            return;
        }

        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _writer.Write(text);
            _length += Utf8.GetByteCount(text);
            if (newline)
            {
                _writer.Write('\n');
                _length++;
            }

            if (AutoFlush)
            {
                _writer.Flush();
            }

            if ((newline || text[^1] == '\n') && _length >= MaxBytes)
            {
                Rotate();
            }
        }
    }

    private void Rotate()
    {
        _writer.Dispose();
        if (Keep == 0)
        {
            File.Delete(_path);
        }
        else
        {
            File.Delete(RotatedPath(_path, Keep));
            for (var generation = Keep - 1; generation >= 1; generation--)
            {
                var older = RotatedPath(_path, generation);
                if (File.Exists(older))
                {
                    File.Move(older, RotatedPath(_path, generation + 1));
                }
            }

            File.Move(_path, RotatedPath(_path, 1));
        }

        (_writer, _length) = Open(_path);
        Rotations++;
    }

    /// <summary>The file opened for appending, and its length so far (bytes written are counted from there).</summary>
    private static (StreamWriter, long) Open(string path)
    {
        var stream = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.ReadWrite | FileShare.Delete);
        return (new StreamWriter(stream, Utf8, bufferSize: 16 * 1024) { AutoFlush = false }, stream.Length);
    }
}
