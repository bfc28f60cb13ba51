namespace Ddpm.Configuration;

/// <summary><c>train_params</c>, the reference's keys plus a seed and an optional step budget.</summary>
public sealed record TrainOptions
{
    public string TaskName { get; init; } = "default";
    public int BatchSize { get; init; } = 64;
    public int NumEpochs { get; init; } = 40;
    public int NumSamples { get; init; } = 100;
    public int NumGridRows { get; init; } = 10;
    public double Lr { get; init; } = 1e-4;
    public string CkptName { get; init; } = "ddpm_ckpt.pth";
    public long Seed { get; init; } = 0;
    /// <summary>Stop after this many optimizer steps in total (0 = no limit; epochs still bound the run).</summary>
    public long MaxSteps { get; init; } = 0;
    /// <summary>Decay of the exponential moving average of the weights (0 = no EMA), with warm-up min(decay, (1+n)/(10+n)).</summary>
    public double EmaDecay { get; init; } = 0;
    /// <summary>Probability of replacing a label by the null label during class-conditional training (classifier-free guidance).</summary>
    public double LabelDropout { get; init; } = 0;
    /// <summary>How many step-numbered checkpoints (<c>checkpoint-&lt;step&gt;.ckpt</c>) to keep beside the latest (0 = only the latest).</summary>
    public int KeepCheckpoints { get; init; } = 3;
    /// <summary>What a non-finite loss or gradient does: stop the run (default) or skip that step.</summary>
    public NonFiniteAction OnNonFinite { get; init; } = NonFiniteAction.Stop;
    /// <summary>fp32 (default) or bf16 forward/backward with float32 master weights.</summary>
    public Precision Precision { get; init; } = Precision.Fp32;

    public void Validate()
    {
        const string p = "train_params.";
        if (BatchSize < 1) throw new ConfigException(p + "batch_size", $"must be >= 1, got {BatchSize}");
        if (NumEpochs < 1) throw new ConfigException(p + "num_epochs", $"must be >= 1, got {NumEpochs}");
        if (NumSamples < 1) throw new ConfigException(p + "num_samples", $"must be >= 1, got {NumSamples}");
        if (NumGridRows < 1) throw new ConfigException(p + "num_grid_rows", $"must be >= 1, got {NumGridRows}");
        if (!(Lr > 0) || double.IsInfinity(Lr)) throw new ConfigException(p + "lr", $"must be a positive number, got {Lr}");
        if (!(EmaDecay >= 0 && EmaDecay < 1)) throw new ConfigException(p + "ema_decay", $"must lie in [0, 1), got {EmaDecay}");
        if (!(LabelDropout >= 0 && LabelDropout < 1)) throw new ConfigException(p + "label_dropout", $"must lie in [0, 1), got {LabelDropout}");
        if (KeepCheckpoints < 0) throw new ConfigException(p + "keep_checkpoints", $"must be >= 0, got {KeepCheckpoints}");
        if (MaxSteps < 0) throw new ConfigException(p + "max_steps", $"must be >= 0, got {MaxSteps}");
    }
}
