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
    /// <summary>Decay of the exponential moving average of the weights (0 = no EMA), with warm-up min(decay,
    /// (1+n)/(10+n)).</summary>
    public double EmaDecay { get; init; } = 0;
    /// <summary>Probability of replacing a label by the null label during class-conditional training (classifier-free
    /// guidance).</summary>
    public double LabelDropout { get; init; } = 0;
    /// <summary>How many step-numbered checkpoints (<c>checkpoint-&lt;step&gt;.ckpt</c>) to keep beside the latest (0 =
    /// only the latest).</summary>
    public int KeepCheckpoints { get; init; } = 3;
    /// <summary>What a non-finite loss or gradient does: stop the run (default) or skip that step.</summary>
    public NonFiniteAction OnNonFinite { get; init; } = NonFiniteAction.Stop;
    /// <summary>fp32 (default) or bf16 forward/backward with float32 master weights.</summary>
    public Precision Precision { get; init; } = Precision.Fp32;
    /// <summary>Decay of the learning rate after the warm-up, down to 0 at the run's last step (constant = the
    /// seed).</summary>
    public LrScheduleKind LrSchedule { get; init; } = LrScheduleKind.Constant;
    /// <summary>Optimizer steps over which the learning rate rises linearly from lr/warm-up to lr (0 = none).</summary>
    public long LrWarmupSteps { get; init; } = 0;
    /// <summary>Min-SNR-γ loss weighting (Hang et al. 2023): γ, typically 5; 0 = the seed's unweighted MSE.</summary>
    public double MinSnrGamma { get; init; } = 0;

    /// <summary>Throws <see cref="ConfigException"/> naming the first offending key
    /// (<see cref="ConfigSchema.Train"/>).</summary>
    public void Validate() => ConfigSchema.Train.Validate(this);
}
