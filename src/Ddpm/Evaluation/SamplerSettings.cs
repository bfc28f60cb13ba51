using Ddpm.Diffusion;

namespace Ddpm.Evaluation;

/// <summary>How the evaluated samples were drawn (Algorithm 2), and the σ_t² the likelihood's p_θ uses.</summary>
public sealed record SamplerSettings(string Name, VarianceKind Variance, bool ClipX0, int Steps, int BatchSize);
