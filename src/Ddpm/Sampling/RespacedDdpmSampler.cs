using Ddpm.Diffusion;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// DDPM ancestral sampling over a sub-sequence τ_1 &lt; … &lt; τ_S of the timesteps, with the betas recomputed for it
/// (improved-diffusion's respacing): β'_i = 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}, ᾱ_{τ_0 − 1} = 1, so the respaced chain keeps the
/// same ᾱ at the visited steps. The model is still called with the original τ_i.
/// </summary>
public sealed class RespacedDdpmSampler : ISampler
{
    private readonly DdpmSampler _inner;

    public IReadOnlyList<int> Timesteps { get; }
    /// <summary>The schedule of the respaced chain (S steps).</summary>
    public NoiseSchedule Respaced { get; }

    public RespacedDdpmSampler(NoiseSchedule schedule, int steps, SpacingKind spacing = SpacingKind.Uniform,
        VarianceKind variance = VarianceKind.BetaTilde, bool clipX0 = false)
        : this(schedule, TimestepSpacing.Ascending(schedule, steps, spacing), variance, clipX0)
    {
    }

    /// <summary>
    /// The respaced chain over explicit timesteps, which must strictly increase and lie in 0..T−1. A grid's lower part
    /// (its tail in sampling order) gives the same betas as the whole grid there, since β'_i depends only on τ_i and
    /// τ_{i−1}.
    /// </summary>
    public RespacedDdpmSampler(NoiseSchedule schedule, IReadOnlyList<int> ascending,
        VarianceKind variance = VarianceKind.BetaTilde, bool clipX0 = false)
    {
        TimestepSpacing.CheckDescending(schedule.T, ascending.Reverse().ToArray());
        var betas = new double[ascending.Count];
        double previous = 1.0;
        for (int i = 0; i < ascending.Count; i++)
        {
            double a = schedule.AlphasCumprod[ascending[i]];
            betas[i] = Math.Min(1 - a / previous, 0.999);
            previous = a;
        }
        Respaced = new NoiseSchedule(betas);
        _inner = new DdpmSampler(new GaussianDiffusion(Respaced), variance, clipX0);
        Timesteps = ascending.Reverse().ToArray();
    }

    public bool UsesNoise(int index) => _inner.UsesNoise(index);

    public Tensor Step(Tensor eps, int index, Tensor x, Tensor? noise) => _inner.Step(eps, index, x, noise);
}
