namespace Ddpm.Diffusion;

/// <summary>The reverse-process variance σ_t² (DDPM paper §3.2: both give similar samples).</summary>
public enum VarianceKind
{
    /// <summary>σ_t² = β̃_t, the posterior variance (the seed's choice, the default).</summary>
    BetaTilde,
    /// <summary>σ_t² = β_t.</summary>
    Beta,
}
