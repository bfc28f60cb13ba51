using Ddpm.Configuration;

namespace Ddpm.Runs;

/// <summary>What to train and where (<see cref="TrainingRun.Open"/>).</summary>
public sealed record TrainingRunRequest
{
    /// <summary>The run folder (created when missing).</summary>
    public required string Folder { get; init; }
    /// <summary>The config of a fresh run; on resume, the config given (checked against the checkpoint's), or
    /// null.</summary>
    public DdpmConfig? Config { get; init; }
    /// <summary>Continue the run in <see cref="Folder"/> from its latest checkpoint, with the checkpoint's
    /// config.</summary>
    public bool Resume { get; init; }
    /// <summary>A fresh run replaces the run already in <see cref="Folder"/> (its checkpoints, logs and
    /// config).</summary>
    public bool Overwrite { get; init; }
    /// <summary>On resume without <see cref="Config"/>: the changes asked of the checkpoint's config (only run-length
    /// keys may change).</summary>
    public Func<DdpmConfig, DdpmConfig>? Adjust { get; init; }
}

/// <summary>How a <see cref="TrainingRun.Run"/> ended: finished, or stopped on request with a checkpoint
/// saved.</summary>
public sealed record TrainingRunResult(bool Stopped, long Step, int Epoch, string Checkpoint);

/// <summary>What a training run reports as it goes (to the folder's owner only, under data parallelism).</summary>
public abstract record TrainingProgress;

/// <summary>A line worth showing: what was loaded, what is trained, a warning.</summary>
public sealed record TrainingNote(string Text) : TrainingProgress;

/// <summary>
/// A step done: <paramref name="Done"/> of <paramref name="Total"/> steps of this epoch (of <paramref name="Epochs"/>),
/// and the time left in it.
/// </summary>
public sealed record TrainingStepDone(Training.StepReport Step, int Epochs, long Done, long Total, TimeSpan? Eta) : TrainingProgress;

/// <summary>An epoch done (or cut short) and saved to <paramref name="Checkpoint"/>.</summary>
public sealed record TrainingEpochDone(Training.EpochReport Report, string Checkpoint) : TrainingProgress;

/// <summary>A request that does not fit the run folder or the model (the CLI's usage error, exit code 2).</summary>
public sealed class RunRequestException(string message) : RequestException(message)
{
    /// <summary>The refusal of a request that both resumes and overwrites a run.</summary>
    public const string ResumeOrOverwrite = "--resume continues the run in --out and --overwrite replaces it: give one of them";
}
