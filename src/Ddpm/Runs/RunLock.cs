using System.Diagnostics;
using System.Globalization;
using Ddpm.IO;
using Ddpm.Training;

namespace Ddpm.Runs;

/// <summary>
/// The one owner of a folder: a lock file (a training run's <c>train.lock</c>, a sample's
/// <see cref="SampleFolder.LockFile"/>) holding the owner's PID and start time, created exclusively (O_EXCL) and
/// deleted on <see cref="Dispose"/>. A lock whose process no longer runs (a PID that is gone, or reused by a process
/// started at another time) is stale: it is taken over, and <see cref="TakenOverFrom"/> says whose it was. Written by
/// hand because .NET has no inter-process lock that also names its holder (a kernel flock dies with its process but
/// cannot be read back; this file can, and the start time guards against PID reuse).
/// </summary>
public sealed class RunLock : IDisposable
{
    public const string FileName = "train.lock";
    /// <summary>A lock file still without content is taken to be mid-creation by its owner for this long.</summary>
    private static readonly TimeSpan CreationGrace = TimeSpan.FromSeconds(10);

    /// <summary>Who holds a lock: process id and the process's start time (UTC).</summary>
    public readonly record struct Holder(int Pid, DateTime StartedUtc)
    {
        public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"PID {Pid}, started {StartedUtc:yyyy-MM-dd HH:mm:ss} UTC");
    }

    private readonly string _content;
    private bool _released;

    public string Path { get; }
    /// <summary>The dead process whose stale lock this one replaced, or null.</summary>
    public Holder? TakenOverFrom { get; }
    /// <summary>
    /// Why <see cref="Dispose"/> could not delete the lock file (the folder became read-only, say), or null. The file
    /// then names this process; once that has ended, the next <see cref="Acquire"/> finds it stale and takes it over.
    /// </summary>
    public string? LeftBehind { get; private set; }

    private RunLock(string path, string content, Holder? takenOverFrom)
    {
        Path = path;
        _content = content;
        TakenOverFrom = takenOverFrom;
    }

    /// <summary>
    /// Takes the lock of <paramref name="folder"/> (which must exist) for this process: the lock file
    /// <paramref name="fileName"/>, for a <paramref name="what"/> (named in the refusal). Throws
    /// <see cref="RunLockedException"/> when a running process holds it; I/O errors (e.g. a read-only folder)
    /// propagate.
    /// </summary>
    public static RunLock Acquire(string folder, string fileName = FileName, string what = "training run")
    {
        var path = System.IO.Path.Combine(System.IO.Path.GetFullPath(folder), fileName);
        var me = Current();
        var content = Format(me);
        Holder? stale = null;
        for (int attempt = 0; attempt < 5; attempt++)
        {
            if (TryCreate(path, content)) return new RunLock(path, content, stale);
            string existing;
            try { existing = File.ReadAllText(path); }
            catch (FileNotFoundException) { continue; } // released in between: try again
            var holder = Parse(existing);
            if (holder is null)
            {
                // Empty or unreadable: its owner may be between creating and writing it; old ones are debris.
                if (DateTime.UtcNow - File.GetLastWriteTimeUtc(path) < CreationGrace)
                    throw new RunLockedException(path, null, what);
            }
            else if (IsRunning(holder.Value))
            {
                throw new RunLockedException(path, holder, what);
            }
            // Stale: move it aside under a name of our own (only one process can), check it is what we judged, retry
            // O_EXCL.
            var aside = path + AtomicFile.TempMarker + Environment.ProcessId;
            try { File.Move(path, aside, overwrite: true); }
            catch (FileNotFoundException) { continue; }
            string moved = File.ReadAllText(aside);
            if (moved != existing)
            {
                // Another process took it over between our read and our move: give its lock back.
                try { File.Move(aside, path, overwrite: false); } catch (IOException) { }
                AtomicFile.TryDelete(aside);
                continue;
            }
            AtomicFile.TryDelete(aside);
            stale = holder;
        }
        throw new RunLockedException(path, null, what);
    }

    private static bool TryCreate(string path, string content)
    {
        try
        {
            using var f = new FileStream(path, FileMode.CreateNew, FileAccess.Write, FileShare.Read);
            var bytes = System.Text.Encoding.ASCII.GetBytes(content);
            f.Write(bytes);
            f.Flush(flushToDisk: true);
            return true;
        }
        catch (IOException) when (File.Exists(path))
        {
            return false;
        }
    }

    /// <summary>This process as a lock holder.</summary>
    public static Holder Current()
    {
        using var self = Process.GetCurrentProcess();
        return new Holder(self.Id, self.StartTime.ToUniversalTime());
    }

    /// <summary>Whether <paramref name="holder"/> still runs: its PID exists and was started at the recorded time (±1
    /// s).</summary>
    public static bool IsRunning(Holder holder)
    {
        try
        {
            using var p = Process.GetProcessById(holder.Pid);
            if (p.HasExited) return false;
            return Math.Abs((p.StartTime.ToUniversalTime() - holder.StartedUtc).TotalSeconds) <= 1;
        }
        catch (ArgumentException) { return false; }          // no such process
        catch (InvalidOperationException) { return false; }  // exited while we looked
        catch (System.ComponentModel.Win32Exception) { return true; } // exists but cannot be inspected
    }

    /// <summary>The lock file's text: <c>pid=…</c> and <c>started=…</c> (round-trip UTC) lines.</summary>
    public static string Format(Holder holder) =>
        string.Create(CultureInfo.InvariantCulture, $"pid={holder.Pid}\nstarted={holder.StartedUtc:O}\n");

    /// <summary>The holder a lock file names, or null when the text is not a complete lock.</summary>
    public static Holder? Parse(string text)
    {
        int? pid = null;
        DateTime? started = null;
        foreach (var line in text.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var parts = line.Split('=', 2);
            if (parts.Length != 2) continue;
            if (parts[0] == "pid" && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var p) && p > 0) pid = p;
            if (parts[0] == "started" && DateTime.TryParse(parts[1], CultureInfo.InvariantCulture, DateTimeStyles.RoundtripKind, out var s))
                started = s.ToUniversalTime();
        }
        return pid is { } id && started is { } at ? new Holder(id, at) : null;
    }

    /// <summary>Deletes the lock file if it is still this process's.</summary>
    public void Dispose()
    {
        if (_released) return;
        _released = true;
        try
        {
            if (File.Exists(Path) && File.ReadAllText(Path) == _content) File.Delete(Path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            LeftBehind = e.Message;
        }
    }
}

/// <summary>
/// A folder's lock is held by a running process (or by one that is creating it right now); <paramref name="what"/>
/// names it.
/// </summary>
public sealed class RunLockedException(string lockPath, RunLock.Holder? holder, string what = "training run")
    : TrainingException(holder is { } h
        ? $"{System.IO.Path.GetDirectoryName(lockPath)} is in use by another {what} ({h}; lock file {lockPath}); " +
          "wait for it to finish, or choose another --out"
        : $"{System.IO.Path.GetDirectoryName(lockPath)} is being claimed by another {what} right now (lock file {lockPath}); " +
          "wait for it, or choose another --out")
{
    public RunLock.Holder? Holder { get; } = holder;
}
