using System.Globalization;
using Ddpm.IO;
using Ddpm.Training;

namespace Ddpm.Runs;

/// <summary>
/// The layout of one run folder: every file <c>ddpm train</c> writes there, by name, defined here once, and what the
/// trainer, <c>ddpm eval</c>, <c>ddpm serve</c> and the CLI read. Checkpoint names belong to
/// <see cref="CheckpointFolder"/> and the lock's to <see cref="RunLock"/>; this class composes them.
/// </summary>
public sealed class RunFolder
{
    /// <summary>The run's resolved config (written once the run starts; the checkpoint holds it too).</summary>
    public const string ConfigFile = "config.yaml";
    /// <summary>One row per optimizer step: <see cref="StepLogHeader"/>.</summary>
    public const string StepLogFile = "loss.csv";
    /// <summary>One row per epoch: <see cref="EpochLogHeader"/>.</summary>
    public const string EpochLogFile = "train_log.csv";
    /// <summary>The per-epoch sample grid of the model being trained.</summary>
    public const string PreviewFile = "preview.png";
    /// <summary>What <c>ddpm eval</c> reports.</summary>
    public const string EvaluationFile = "eval.json";
    /// <summary>Where <c>ddpm sample</c>'s output usually goes inside a run (<see cref="SampleFolder"/>).</summary>
    public const string SamplesFolder = "samples";
    private const string TensorBoardPattern = "events.out.tfevents.*";

    public const string StepLogHeader = "step,loss";
    public const string EpochLogHeader = "epoch,step,mean_loss,seconds,images_per_s,rss_start_mb,rss_end_mb";

    /// <summary>Files whose presence makes a folder a run for the server's catalog (besides checkpoints).</summary>
    public static IReadOnlyList<string> Markers { get; } = [ConfigFile, EpochLogFile, StepLogFile, EvaluationFile];

    public RunFolder(string path) => Path = path;

    /// <summary>The folder as given (relative paths stay relative, so messages show what the user typed).</summary>
    public string Path { get; }

    public string ConfigPath => File(ConfigFile);
    public string StepLogPath => File(StepLogFile);
    public string EpochLogPath => File(EpochLogFile);
    public string PreviewPath => File(PreviewFile);
    public string EvaluationPath => File(EvaluationFile);
    public string LatestCheckpointPath => File(CheckpointFolder.LatestName);
    public string LockPath => File(RunLock.FileName);

    private string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>The run's checkpoints, keeping the last <paramref name="keep"/> numbered ones.</summary>
    public CheckpointFolder Checkpoints(int keep) => new(Path, keep);

    /// <summary>TensorBoard's event files in the folder.</summary>
    public IEnumerable<string> TensorBoardFiles() =>
        Directory.Exists(Path) ? Directory.EnumerateFiles(Path, TensorBoardPattern) : [];

    /// <summary>
    /// Whether <paramref name="directory"/> looks like a run: a marker or a checkpoint in it, each a regular file.
    /// </summary>
    public static bool LooksLikeRun(string directory) =>
        Markers.Any(m => RegularFile.Is(System.IO.Path.Combine(directory, m))) || CheckpointFolder.Files(directory).Any();

    /// <summary>The files of a training run here (checkpoints, logs, preview, config, TensorBoard events), nothing
    /// else.</summary>
    public IEnumerable<string> RunFiles()
    {
        var checkpoints = Checkpoints(0);
        var named = new[] { ConfigPath, EpochLogPath, StepLogPath, PreviewPath, checkpoints.LatestPath };
        return named.Where(System.IO.File.Exists).Concat(checkpoints.Numbered().Select(c => c.Path)).Concat(TensorBoardFiles());
    }

    /// <summary>Whether a training run already lives here (a fresh run into the folder must be refused or overwrite
    /// it).</summary>
    public bool HoldsRun => RunFiles().Any();

    /// <summary>Deletes <see cref="RunFiles"/> (nothing else in the folder).</summary>
    public void RemoveRun()
    {
        foreach (var f in RunFiles().ToList()) System.IO.File.Delete(f);
    }

    /// <summary>
    /// Opens the step log: a fresh run starts it anew; a resumed run keeps the rows up to step
    /// <paramref name="continueAt"/> (rows a killed process wrote after its last checkpoint are dropped) and appends.
    /// </summary>
    public StreamWriter OpenStepLog(long? continueAt) => OpenLog(StepLogPath, StepLogHeader, stepColumn: 0, continueAt);

    /// <summary>The epoch log, as <see cref="OpenStepLog"/>.</summary>
    public StreamWriter OpenEpochLog(long? continueAt) => OpenLog(EpochLogPath, EpochLogHeader, stepColumn: 1, continueAt);

    /// <summary>One row of the epoch log for <paramref name="r"/>.</summary>
    public static string EpochLogRow(EpochReport r) => string.Create(CultureInfo.InvariantCulture,
        $"{r.Epoch},{r.Step},{r.MeanLoss:G6},{r.Seconds:F2},{r.ImagesPerSecond:F2},{r.RssStartBytes / 1048576.0:F1},{r.RssEndBytes / 1048576.0:F1}");

    /// <summary>One row of the step log.</summary>
    public static string StepLogRow(StepReport s) => string.Create(CultureInfo.InvariantCulture, $"{s.Step},{s.Loss:G6}");

    private static StreamWriter OpenLog(string path, string header, int stepColumn, long? continueAt)
    {
        if (continueAt is not { } step || !System.IO.File.Exists(path))
        {
            var fresh = new StreamWriter(path, append: false);
            fresh.WriteLine(header);
            return fresh;
        }
        var kept = new List<string> { header };
        foreach (var line in System.IO.File.ReadLines(path).Skip(1))
        {
            var cells = line.Split(',');
            if (cells.Length > stepColumn && long.TryParse(cells[stepColumn], NumberStyles.Integer, CultureInfo.InvariantCulture, out var s)
                && s <= step)
                kept.Add(line);
        }
        AtomicFile.WriteAllText(path, string.Join('\n', kept) + "\n");
        return new StreamWriter(path, append: true);
    }
}
