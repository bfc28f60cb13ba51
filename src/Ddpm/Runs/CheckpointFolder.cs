using System.Globalization;
using Ddpm.IO;
using Ddpm.Training;

namespace Ddpm.Runs;

/// <summary>
/// A run's checkpoints: the last <see cref="Keep"/> as <c>checkpoint-&lt;step&gt;.ckpt</c> plus the latest as
/// <c>checkpoint.ckpt</c>. Each save writes the numbered file atomically (<see cref="Checkpoint.Save"/>), then
/// publishes it as the latest by a hard link (a copy where links are unsupported) renamed over <c>checkpoint.ckpt</c>,
/// then deletes the oldest numbered files. A process killed at any moment leaves <c>checkpoint.ckpt</c> as either the
/// previous or the new checkpoint, never a torn file.
/// </summary>
public sealed class CheckpointFolder
{
    /// <summary>The latest checkpoint's file name (the name the CLI, docs and <c>--resume</c> use).</summary>
    public const string LatestName = "checkpoint.ckpt";
    /// <summary>What every checkpoint file's name ends with (a run's, or one written by <c>ddpm import</c>).</summary>
    public const string Extension = ".ckpt";
    private const string Prefix = "checkpoint-", TempMarker = AtomicFile.TempMarker;

    public string Directory { get; }
    /// <summary>How many numbered checkpoints to keep (0 = only <see cref="LatestPath"/>).</summary>
    public int Keep { get; }
    public string LatestPath => Path.Combine(Directory, LatestName);

    public CheckpointFolder(string directory, int keep)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(keep);
        Directory = Path.GetFullPath(directory);
        Keep = keep;
    }

    /// <summary>
    /// Every checkpoint file in <paramref name="directory"/> (any regular file whose name ends in
    /// <see cref="Extension"/>; a FIFO or device so named is left out, since opening it could block); none when it
    /// cannot be listed.
    /// </summary>
    public static IReadOnlyList<string> Files(string directory)
    {
        try { return System.IO.Directory.EnumerateFiles(directory, "*" + Extension).Where(f => RegularFile.SpecialKind(f) is null).ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
    }

    /// <summary>The path of the numbered checkpoint of <paramref name="step"/>.</summary>
    public string NumberedPath(long step) => Path.Combine(Directory, string.Create(CultureInfo.InvariantCulture, $"{Prefix}{step}{Extension}"));

    /// <summary>The numbered checkpoints present, oldest step first.</summary>
    public IReadOnlyList<(long Step, string Path)> Numbered()
    {
        if (!System.IO.Directory.Exists(Directory)) return [];
        var found = new List<(long, string)>();
        foreach (var path in System.IO.Directory.GetFiles(Directory, Prefix + "*" + Extension))
        {
            var name = Path.GetFileName(path);
            var digits = name[Prefix.Length..^Extension.Length];
            if (long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var step)) found.Add((step, path));
        }
        return found.OrderBy(f => f.Item1).ToList();
    }

    /// <summary>
    /// Writes the checkpoint of <paramref name="step"/> with <paramref name="save"/> (which must write atomically, as
    /// <see cref="Checkpoint.Save"/> does), publishes it as the latest and prunes old ones. Returns the latest's path.
    /// </summary>
    public string Save(long step, Action<string> save)
    {
        System.IO.Directory.CreateDirectory(Directory);
        if (Keep == 0)
        {
            save(LatestPath);
        }
        else
        {
            var numbered = NumberedPath(step);
            try
            {
                save(numbered);
            }
            catch (CheckpointException e) when (e.InnerException is IOException or UnauthorizedAccessException)
            {
                throw new CheckpointException(numbered, $"{e.InnerException!.Message}; " + (File.Exists(LatestPath)
                    ? $"the latest checkpoint {LatestPath} is intact" : "no earlier checkpoint exists"), e);
            }
            Publish(numbered);
            Prune(keepAlso: numbered);
        }
        RemoveStaleTemporaries();
        return LatestPath;
    }

    /// <summary>Makes <paramref name="numbered"/> the latest: a hard link to it (a copy where links are unsupported)
    /// renamed over the latest.</summary>
    private void Publish(string numbered)
    {
        try
        {
            AtomicFile.Replace(LatestPath, temp =>
            {
                File.Delete(temp);
                if (FileDurability.TryHardLink(numbered, temp)) return;
                File.Copy(numbered, temp, overwrite: true);
                using var f = new FileStream(temp, FileMode.Open, FileAccess.ReadWrite);
                f.Flush(flushToDisk: true);
            });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(LatestPath, $"could not be updated to {Path.GetFileName(numbered)} ({e.Message}); " +
                (File.Exists(LatestPath) ? "the previous latest checkpoint is intact" : "no earlier checkpoint was there"), e);
        }
    }

    private void Prune(string keepAlso)
    {
        var all = Numbered();
        foreach (var (_, path) in all.Take(Math.Max(0, all.Count - Keep)))
            if (path != keepAlso) AtomicFile.TryDelete(path);
    }

    /// <summary>Temporary files left by killed processes (<c>….ckpt.tmp-&lt;pid&gt;</c> of a pid no longer
    /// running).</summary>
    private void RemoveStaleTemporaries()
    {
        if (!OperatingSystem.IsLinux()) return;
        foreach (var path in System.IO.Directory.GetFiles(Directory, "checkpoint*" + Extension + TempMarker + "*"))
        {
            var pid = Path.GetFileName(path).Split(TempMarker)[^1];
            if (int.TryParse(pid, NumberStyles.None, CultureInfo.InvariantCulture, out var id) && id != Environment.ProcessId
                && !System.IO.Directory.Exists($"/proc/{id}"))
                AtomicFile.TryDelete(path);
        }
    }
}
