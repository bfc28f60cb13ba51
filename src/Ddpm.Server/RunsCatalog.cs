using System.Collections.Concurrent;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json.Serialization;
using Ddpm.Configuration;
using Ddpm.IO;
using Ddpm.Runs;
using Ddpm.Training;

namespace Ddpm.Server;

/// <summary>What a client needs to know about a checkpoint's model to build a valid request.</summary>
/// <param name="Distilled">A distilled student's grid and built-in guidance (it samples only those), or null.</param>
public sealed record ModelSummary(int Timesteps, int ImageSize, int Channels, int NumClasses, double LabelDropout, bool HasEma,
    int DefaultImages, int DefaultRows, Distillation.DistilledGrid? Distilled = null);

/// <summary>A checkpoint the server found; clients refer to it by <see cref="Id"/>, never by path.</summary>
public sealed record CheckpointInfo(string Id, string Name, string RunName, long Step, int Epoch, DateTime ModifiedUtc, ModelSummary Model)
{
    [JsonIgnore] public string FullPath { get; init; } = "";
    [JsonIgnore] public DdpmConfig Config { get; init; } = null!;
}

/// <summary>A run folder: its checkpoints and the newest sample grid in it (a path relative to the runs
/// folder).</summary>
public sealed record RunInfo(string Id, string Name, IReadOnlyList<CheckpointInfo> Checkpoints, string? LatestSample, DateTime ModifiedUtc)
{
    [JsonIgnore] public string FullPath { get; init; } = "";
}

/// <summary>
/// Finds runs under a <see cref="RunsFolder"/>: every folder (the root included, three levels deep at most) that
/// <see cref="RunFolder.LooksLikeRun"/>; the folders inside a run (its samples, an evaluation) belong to it.
/// Ids are hashes of paths relative to the runs folder, stable across restarts. Checkpoint manifests are read once per
/// file version (path, size, modification time).
/// </summary>
public sealed class RunsCatalog(RunsFolder folder)
{
    public const int MaxDepth = 3;
    private static readonly string[] SampleNames = [RunFolder.PreviewFile, SampleFolder.GridFile];
    private readonly ConcurrentDictionary<(string Listed, string Real, long Length, DateTime Modified), CheckpointInfo?> _manifests = new();

    public RunsFolder Folder { get; } = folder;

    /// <summary>Called with a message for each checkpoint that cannot be read (it is left out of the list).</summary>
    public Action<string>? Warn { get; init; }

    /// <summary>The runs, by name.</summary>
    public IReadOnlyList<RunInfo> Scan()
    {
        var runs = new List<RunInfo>();
        Visit(Folder.Root, 0, runs, []);
        // Forget manifests of files that are gone (pruned numbered checkpoints) or were replaced (a newer latest).
        foreach (var key in _manifests.Keys)
            if (new FileInfo(key.Real) is var f && (!f.Exists || f.Length != key.Length || f.LastWriteTimeUtc != key.Modified))
                _manifests.TryRemove(key, out _);
        return runs.OrderBy(r => r.Name, StringComparer.Ordinal).ToList();
    }

    public RunInfo? FindRun(string id) => IsId(id) ? Scan().FirstOrDefault(r => r.Id == id) : null;

    public CheckpointInfo? FindCheckpoint(string id) =>
        IsId(id) ? Scan().SelectMany(r => r.Checkpoints).FirstOrDefault(c => c.Id == id) : null;

    /// <summary>The id of a path relative to the runs folder: 16 hex digits of its SHA-256.</summary>
    public static string IdOf(string relative) =>
        Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(relative)))[..16];

    private static bool IsId(string id) => id.Length == 16 && id.All(char.IsAsciiHexDigitLower);

    private void Visit(string dir, int depth, List<RunInfo> runs, HashSet<string> visited)
    {
        if (!visited.Add(dir)) return; // reached twice through a link
        if (IsRun(dir))
        {
            runs.Add(Describe(dir));
            return;
        }
        if (depth == MaxDepth) return;
        foreach (var sub in SafeEnumerate(() => Directory.EnumerateDirectories(dir)).Order(StringComparer.Ordinal))
        {
            if (Path.GetFileName(sub).StartsWith('.')) continue;
            // A linked folder is followed only while it stays inside the runs folder.
            if (Folder.Contain(sub) is { } real) Visit(real, depth + 1, runs, visited);
        }
    }

    private static bool IsRun(string dir) => RunFolder.LooksLikeRun(dir);

    private RunInfo Describe(string dir)
    {
        var name = Folder.Relative(dir);
        var checkpoints = CheckpointFolder.Files(dir)
            .Select(p => Folder.Contain(p) is { } real ? ReadCheckpoint(p, real, name) : null)
            .OfType<CheckpointInfo>()
            .OrderByDescending(c => c.Name == CheckpointFolder.LatestName).ThenByDescending(c => c.Step).ThenBy(c => c.Name, StringComparer.Ordinal)
            .ToList();
        var sample = SampleNames
            .SelectMany(n => new[] { Path.Combine(dir, n), Path.Combine(dir, RunFolder.SamplesFolder, n) })
            .Select(p => Folder.Contain(p))
            .OfType<string>()
            .Where(RegularFile.Is) // a FIFO or device would hang whoever reads it
            .Select(p => new FileInfo(p))
            .OrderByDescending(f => f.LastWriteTimeUtc)
            .FirstOrDefault();
        // Advertised only when /files serves it (a folder name with a line break or a leading dot is refused there).
        var samplePath = sample is null ? null : Folder.Relative(sample.FullName);
        if (samplePath is not null && Folder.Resolve(samplePath) is null) samplePath = null;
        return new RunInfo(IdOf(name), name, checkpoints, samplePath, Directory.GetLastWriteTimeUtc(dir)) { FullPath = dir };
    }

    private CheckpointInfo? ReadCheckpoint(string listedPath, string realPath, string runName)
    {
        var file = new FileInfo(realPath);
        return _manifests.GetOrAdd((listedPath, realPath, file.Length, file.LastWriteTimeUtc), _ =>
        {
            try
            {
                using var checkpoint = CheckpointReader.Open(realPath); // one open for the manifest, the config and the EMA flag
                var (manifest, config) = (checkpoint.Manifest, checkpoint.Config);
                var model = new ModelSummary(config.Diffusion.NumTimesteps, config.Model.ImSize, config.Model.ImChannels, config.Model.NumClasses,
                    config.Train.LabelDropout, checkpoint.HasEma, config.Train.NumSamples, config.Train.NumGridRows,
                    manifest.Distilled);
                return new CheckpointInfo(IdOf(Folder.Relative(listedPath)), Path.GetFileName(listedPath), runName, manifest.Step, manifest.Epoch,
                    file.LastWriteTimeUtc, model)
                { FullPath = realPath, Config = config };
            }
            catch (Exception e) when (e is CheckpointException or ConfigException or IOException or InvalidDataException)
            {
                Warn?.Invoke($"skipping {listedPath}: {e.Message}");
                return null;
            }
        });
    }

    private static IEnumerable<string> SafeEnumerate(Func<IEnumerable<string>> list)
    {
        try { return list().ToList(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException) { return []; }
    }
}
