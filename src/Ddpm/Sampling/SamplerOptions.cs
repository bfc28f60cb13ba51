using Ddpm.Diffusion;

namespace Ddpm.Sampling;

/// <summary>The reverse-process families.</summary>
public enum SamplerKind
{
    /// <summary>Ancestral sampling, Algorithm 2 (respaced when <see cref="SamplerOptions.Steps"/> &lt; T).</summary>
    Ddpm,
    /// <summary>DDIM (Song et al. 2021).</summary>
    Ddim,
}

/// <summary>How to sample: family, number of steps, DDIM's η, spacing, variance and clipping.</summary>
public sealed record SamplerOptions
{
    public SamplerKind Kind { get; init; } = SamplerKind.Ddpm;
    /// <summary>Number of reverse steps S (null = T).</summary>
    public int? Steps { get; init; }
    /// <summary>DDIM's η ∈ [0, 1] (0 = deterministic).</summary>
    public double Eta { get; init; }
    public SpacingKind Spacing { get; init; } = SpacingKind.Uniform;
    public VarianceKind Variance { get; init; } = VarianceKind.BetaTilde;
    public bool ClipX0 { get; init; }

    /// <summary>Builds the sampler for <paramref name="schedule"/>; throws <see cref="ArgumentException"/> naming the bad setting.</summary>
    public ISampler Create(NoiseSchedule schedule)
    {
        int steps = Steps ?? schedule.T;
        if (steps < 1 || steps > schedule.T)
            throw new ArgumentException($"steps must lie in 1..T = 1..{schedule.T}, got {steps}");
        if (!(Eta >= 0 && Eta <= 1)) throw new ArgumentException($"eta must lie in [0, 1], got {Eta}");
        if (Kind == SamplerKind.Ddpm && Eta != 0) throw new ArgumentException("eta applies to the ddim sampler only");
        return Kind switch
        {
            SamplerKind.Ddim => new DdimSampler(schedule, steps, Eta, Spacing, ClipX0),
            SamplerKind.Ddpm when steps == schedule.T && Spacing == SpacingKind.Uniform =>
                new DdpmSampler(new GaussianDiffusion(schedule), Variance, ClipX0),
            SamplerKind.Ddpm => new RespacedDdpmSampler(schedule, steps, Spacing, Variance, ClipX0),
            _ => throw new ArgumentOutOfRangeException(nameof(Kind)),
        };
    }
}
