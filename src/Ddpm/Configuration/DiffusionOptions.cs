namespace Ddpm.Configuration;

/// <summary>The β schedule family.</summary>
public enum ScheduleKind
{
    /// <summary>β linear from β_start to β_end (Ho et al. 2020; the seed).</summary>
    Linear,
    /// <summary>ᾱ(t) = cos²(((t/T)+s)/(1+s)·π/2) (Nichol &amp; Dhariwal 2021).</summary>
    Cosine,
}

/// <summary>What the network is trained to output (the conversions live in
/// <see cref="Ddpm.Diffusion.GaussianDiffusion"/>).</summary>
public enum PredictionTarget
{
    /// <summary>The noise ε (Ho et al. 2020; the seed).</summary>
    [AlsoSpelled("eps")] Epsilon,
    /// <summary>The clean image x_0.</summary>
    [AlsoSpelled("x_0", "sample")] X0,
    /// <summary>v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (Salimans &amp; Ho 2022).</summary>
    V,
}

/// <summary><c>diffusion_params</c>: the forward process.</summary>
public sealed record DiffusionOptions
{
    public int NumTimesteps { get; init; } = 1000;
    public double BetaStart { get; init; } = 1e-4;
    public double BetaEnd { get; init; } = 0.02;
    public ScheduleKind Schedule { get; init; } = ScheduleKind.Linear;
    public PredictionTarget Prediction { get; init; } = PredictionTarget.Epsilon;

    /// <summary>Throws <see cref="ConfigException"/> naming the first offending key
    /// (<see cref="ConfigSchema.Diffusion"/>).</summary>
    public void Validate() => ConfigSchema.Diffusion.Validate(this);
}
