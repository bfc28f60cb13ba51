using System.Text;

namespace Ddpm.IO;

/// <summary>
/// The one way this library writes a file: into a temporary sibling (<c>&lt;name&gt;.tmp-&lt;pid&gt;</c>, in the same
/// folder so the rename never crosses file systems), flushed to disk, renamed over the target, then the folder fsynced
/// so that the rename itself survives a power loss. A reader sees the old file or the new one, never part of one; when
/// anything fails the temporary file is removed, the exception propagates and whatever was at the path is untouched. A
/// temporary left by a writer that was killed (its process is gone) is removed by the next write to the same path.
/// </summary>
internal static class AtomicFile
{
    /// <summary>What separates a target's name from the writing process's id in its temporary sibling's name.</summary>
    public const string TempMarker = ".tmp-";

    /// <summary>Writes <paramref name="bytes"/> to <paramref name="path"/>.</summary>
    public static void WriteAllBytes(string path, byte[] bytes) => Write(path, s => s.Write(bytes));

    /// <summary>Writes <paramref name="text"/> as UTF-8 (no byte-order mark, as
    /// <see cref="File.WriteAllText(string, string)"/>).</summary>
    public static void WriteAllText(string path, string text) => WriteAllBytes(path, Encoding.UTF8.GetBytes(text));

    /// <summary>Writes whatever <paramref name="write"/> puts into the stream it is given (it need not flush or close
    /// it).</summary>
    public static void Write(string path, Action<Stream> write) => Replace(path, temp =>
    {
        using var file = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None);
        write(file);
        file.Flush(flushToDisk: true);
    });

    /// <summary>
    /// Puts a file made by <paramref name="create"/> at <paramref name="path"/>: <paramref name="create"/> gets the
    /// temporary path and must leave a complete file there, flushed to disk (or a hard link to one); it is then renamed
    /// over <paramref name="path"/> and the folder is fsynced.
    /// </summary>
    public static void Replace(string path, Action<string> create)
    {
        var full = Path.GetFullPath(path);
        var folder = Path.GetDirectoryName(full)!;
        Directory.CreateDirectory(folder);
        RemoveStaleTemporaries(full);
        var temp = TemporaryFor(full);
        try
        {
            create(temp);
            File.Move(temp, full, overwrite: true);
        }
        catch
        {
            TryDelete(temp);
            throw;
        }
        FileDurability.FsyncDirectory(folder);
    }

    /// <summary>The temporary sibling this process writes <paramref name="path"/> through.</summary>
    public static string TemporaryFor(string path) => Path.GetFullPath(path) + TempMarker + Environment.ProcessId;

    /// <summary>
    /// Removes <c>&lt;name&gt;.tmp-&lt;pid&gt;</c> siblings of <paramref name="full"/> whose process no longer runs (a
    /// writer killed mid-write, e.g. by SIGKILL, cannot clean up after itself). Temporaries of live processes are left
    /// alone.
    /// </summary>
    public static void RemoveStaleTemporaries(string full)
    {
        var folder = Path.GetDirectoryName(full)!;
        var prefix = Path.GetFileName(full) + TempMarker;
        List<string> candidates;
        try { candidates = Directory.EnumerateFiles(folder).Where(f => Path.GetFileName(f).StartsWith(prefix, StringComparison.Ordinal)).ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return; }
        foreach (var candidate in candidates)
            if (int.TryParse(Path.GetFileName(candidate)[prefix.Length..], System.Globalization.NumberStyles.None,
                    System.Globalization.CultureInfo.InvariantCulture, out int pid) && pid != Environment.ProcessId && !IsRunning(pid))
                TryDelete(candidate);
    }

    /// <summary>
    /// While the result is not disposed, SIGINT, SIGTERM or SIGHUP first delete this process's temporary for
    /// <paramref name="path"/>, then take their default action (the process ends without a stray <c>.tmp-</c> file).
    /// </summary>
    public static IDisposable RemoveTemporaryOnSignal(string path)
    {
        var temp = TemporaryFor(path);
        var registrations = new[] { System.Runtime.InteropServices.PosixSignal.SIGINT, System.Runtime.InteropServices.PosixSignal.SIGTERM,
                System.Runtime.InteropServices.PosixSignal.SIGHUP }
            .Select(signal => System.Runtime.InteropServices.PosixSignalRegistration.Create(signal, _ => TryDelete(temp)))
            .ToList();
        return new Registrations(registrations);
    }

    private sealed class Registrations(List<System.Runtime.InteropServices.PosixSignalRegistration> list) : IDisposable
    {
        public void Dispose() { foreach (var r in list) r.Dispose(); }
    }

    private static bool IsRunning(int pid)
    {
        try
        {
            using var process = System.Diagnostics.Process.GetProcessById(pid);
            return !process.HasExited;
        }
        catch (Exception e) when (e is ArgumentException or InvalidOperationException) { return false; }
    }

    /// <summary>Deletes <paramref name="path"/> if it can; a file that cannot be deleted is left (best effort, never
    /// throws for I/O).</summary>
    public static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
