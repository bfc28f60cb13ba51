using Ddpm.Diffusion;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// Algorithm 2 of Ho et al. (the seed's sampling procedure): for t = T−1..0, x_{t−1} = μ_θ(x_t, t) + σ_t z,
/// z ~ N(0, I), with no noise at the last step; σ_t² = β̃_t (default) or β_t.
/// </summary>
public sealed class DdpmSampler(GaussianDiffusion diffusion, VarianceKind variance = VarianceKind.BetaTilde, bool clipX0 = false) : ISampler
{
    public IReadOnlyList<int> Timesteps { get; } = Enumerable.Range(0, diffusion.T).Reverse().ToArray();

    public VarianceKind Variance => variance;
    public bool ClipX0 => clipX0;

    /// <summary>Every step but the last (t = 0) adds σ_t z.</summary>
    public bool UsesNoise(int index) => Timesteps[index] != 0;

    public Tensor Step(Tensor eps, int index, Tensor x, Tensor? noise)
    {
        int t = Timesteps[index];
        if (t != 0 && noise is null) throw new ArgumentException($"the ancestral step at t = {t} needs noise z", nameof(noise));
        using var scope = NewDisposeScope();
        var tt = full(x.shape[0], (long)t, dtype: int64, device: x.device);
        var p = diffusion.PMeanVarianceFromEps(x, tt, eps, variance, clipX0);
        if (t == 0) return p.Mean.MoveToOuterDisposeScope();
        return (p.Mean + (0.5 * p.LogVariance).exp() * noise!).MoveToOuterDisposeScope();
    }
}
