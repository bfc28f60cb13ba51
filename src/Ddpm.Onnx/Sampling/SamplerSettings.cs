namespace Ddpm.Onnx.Sampling;

/// <summary>The reverse-process families this library runs.</summary>
public enum SamplerKind
{
    /// <summary>DPM-Solver++(2M) SDE (Lu et al. 2022): the default, as <c>ddpm sample</c>'s.</summary>
    DpmSolver2MSde,
    /// <summary>DPM-Solver++(2M), the deterministic probability-flow ODE solver.</summary>
    DpmSolver2M,
    /// <summary>Ancestral sampling, Algorithm 2 (respaced when fewer than T steps).</summary>
    Ddpm,
    /// <summary>DDIM (Song et al. 2021).</summary>
    Ddim,
}

/// <summary>How to sample: family, steps, spacing, DDIM's η, the ancestral variance and x̂_0 clipping.</summary>
public sealed record SamplerSettings
{
    public SamplerKind Kind { get; init; } = SamplerKind.DpmSolver2MSde;
    /// <summary>Steps S; null = 20 (at most T) for the solvers, all T for DDPM and DDIM.</summary>
    public int? Steps { get; init; }
    /// <summary>null = Karras for the solvers, uniform for DDPM and DDIM.</summary>
    public SpacingKind? Spacing { get; init; }
    /// <summary>DDIM's η ∈ [0, 1].</summary>
    public double Eta { get; init; }
    public VarianceKind Variance { get; init; } = VarianceKind.BetaTilde;
    /// <summary>Clamp x̂_0 to [−1, 1] inside every step.</summary>
    public bool ClipX0 { get; init; }

    public const int DefaultSolverSteps = 20;

    public bool IsSolver => Kind is SamplerKind.DpmSolver2MSde or SamplerKind.DpmSolver2M;

    /// <summary>A fresh sampler for <paramref name="schedule"/> (one per batch: the solvers keep state).</summary>
    /// <exception cref="ArgumentException">A setting out of range, named.</exception>
    public ISpanSampler Create(DiffusionSchedule schedule)
    {
        int steps = Steps ?? (IsSolver ? Math.Min(DefaultSolverSteps, schedule.T) : schedule.T);
        if (steps < 1 || steps > schedule.T) throw new ArgumentException($"steps must lie in 1..T = 1..{schedule.T}, got {steps}");
        if (!Enum.IsDefined(Kind)) throw new ArgumentException($"sampler: unknown kind {(int)Kind}");
        var spacing = Spacing ?? (IsSolver ? SpacingKind.Karras : SpacingKind.Uniform);
        if (!Enum.IsDefined(spacing)) throw new ArgumentException($"spacing: unknown kind {(int)spacing}");
        if (!(Eta >= 0 && Eta <= 1)) throw new ArgumentException($"eta must lie in [0, 1], got {Eta}");
        if (Kind != SamplerKind.Ddim && Eta != 0) throw new ArgumentException("eta applies to the ddim sampler only");
        return Kind switch
        {
            SamplerKind.DpmSolver2MSde => new DpmSolverSampler(schedule, steps, spacing, 2, stochastic: true, ClipX0),
            SamplerKind.DpmSolver2M => new DpmSolverSampler(schedule, steps, spacing, 2, stochastic: false, ClipX0),
            SamplerKind.Ddpm => new AncestralSampler(schedule, steps, spacing, Variance, ClipX0),
            SamplerKind.Ddim => new DdimSampler(schedule, steps, Eta, spacing, ClipX0),
            _ => throw new ArgumentOutOfRangeException(nameof(Kind)),
        };
    }
}
