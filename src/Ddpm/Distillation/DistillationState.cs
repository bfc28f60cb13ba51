namespace Ddpm.Distillation;

/// <summary>
/// Where a distillation run stands, stored in the manifest of its checkpoints
/// (<see cref="Training.CheckpointManifest.Distillation"/>) beside the student's weights, Adam state, RNG and EMA:
/// enough to resume bit for bit, given the round's teacher file.
/// </summary>
public sealed record DistillationState
{
    /// <summary>The settings of the run (stored so a resume needs none).</summary>
    public DistillationOptions Options { get; init; } = new();
    /// <summary>The round being trained, 1 … <see cref="Rounds"/>.</summary>
    public int Round { get; init; }
    public int Rounds { get; init; }
    /// <summary>Optimizer steps done in <see cref="Round"/> (the checkpoint's own step counts all rounds).</summary>
    public long StepInRound { get; init; }
    /// <summary>The teacher's DDIM grid of this round (twice the student's steps), noisiest first.</summary>
    public int[] TeacherTimesteps { get; init; } = [];
    /// <summary>
    /// SHA-256 of the file this round's teacher was read from (the original teacher, or the previous round's student).
    /// </summary>
    public string TeacherSha256 { get; init; } = "";
    /// <summary>SHA-256 of the original teacher checkpoint, and its training step.</summary>
    public string OriginalTeacherSha256 { get; init; } = "";
    public long OriginalTeacherStep { get; init; }
}
