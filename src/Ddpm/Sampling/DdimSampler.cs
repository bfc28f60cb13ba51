using Ddpm.Diffusion;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// DDIM (Song et al. 2021, eq. 12) over a sub-sequence of S ≤ T timesteps:
/// x_{τ−} = √ᾱ_{τ−} x̂_0 + √(1 − ᾱ_{τ−} − σ²) ε_θ + σ z, with σ = η √((1 − ᾱ_{τ−})/(1 − ᾱ_τ)) √(1 − ᾱ_τ/ᾱ_{τ−}).
/// η = 0 is deterministic; η = 1 with S = T is DDPM's ancestral step with σ² = β̃_t. After the last step ᾱ = 1 (x̂_0).
/// </summary>
public sealed class DdimSampler : ISampler
{
    private readonly NoiseSchedule _schedule;
    private readonly double _eta;
    private readonly bool _clipX0;

    public IReadOnlyList<int> Timesteps { get; }

    public DdimSampler(NoiseSchedule schedule, int steps, double eta = 0.0, SpacingKind spacing = SpacingKind.Uniform, bool clipX0 = false)
        : this(schedule, TimestepSpacing.Ascending(schedule, steps, spacing).Reverse().ToArray(), eta, clipX0)
    {
    }

    /// <summary>
    /// DDIM over explicit timesteps, which must strictly decrease and lie in 0..T−1: e.g. the tail of a grid, to start
    /// from a partly noised image (image-to-image).
    /// </summary>
    public DdimSampler(NoiseSchedule schedule, IReadOnlyList<int> descending, double eta = 0.0, bool clipX0 = false)
    {
        if (!(eta >= 0 && eta <= 1)) throw new ArgumentOutOfRangeException(nameof(eta), $"η must lie in [0, 1], got {eta}");
        TimestepSpacing.CheckDescending(schedule.T, descending);
        _schedule = schedule;
        _eta = eta;
        _clipX0 = clipX0;
        Timesteps = descending.ToArray();
    }

    /// <summary>σ of the step from Timesteps[index] (0 when it is the last).</summary>
    public double Sigma(int index)
    {
        var (a, aPrev) = Alphas(index);
        return _eta * Math.Sqrt((1 - aPrev) / (1 - a)) * Math.Sqrt(1 - a / aPrev);
    }

    private (double A, double APrev) Alphas(int index)
    {
        double a = _schedule.AlphasCumprod[Timesteps[index]];
        double aPrev = index + 1 < Timesteps.Count ? _schedule.AlphasCumprod[Timesteps[index + 1]] : 1.0;
        return (a, aPrev);
    }

    /// <summary>A step adds σ z only when σ &gt; 0 (η &gt; 0 and not the last step).</summary>
    public bool UsesNoise(int index) => Sigma(index) > 0;

    public Tensor Step(Tensor eps, int index, Tensor x, Tensor? noise)
    {
        var (a, aPrev) = Alphas(index);
        double sigma = Sigma(index);
        if (sigma > 0 && noise is null) throw new ArgumentException($"the DDIM step {index} with σ = {sigma} needs noise z", nameof(noise));
        using var scope = NewDisposeScope();
        var x0 = (x - Math.Sqrt(1 - a) * eps) / Math.Sqrt(a);
        if (_clipX0)
        {
            x0 = x0.clamp(-1.0, 1.0);
            eps = (x - Math.Sqrt(a) * x0) / Math.Sqrt(1 - a);
        }
        var next = Math.Sqrt(aPrev) * x0 + Math.Sqrt(Math.Max(1 - aPrev - sigma * sigma, 0)) * eps;
        if (sigma > 0) next = next + sigma * noise!;
        return next.MoveToOuterDisposeScope();
    }
}
