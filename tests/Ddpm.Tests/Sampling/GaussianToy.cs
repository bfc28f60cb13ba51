using Ddpm.Diffusion;
using Ddpm.Sampling;
using static TorchSharp.torch;

namespace Ddpm.Tests.Sampling;

/// <summary>
/// Data x_0 ~ N(μ, s²I), where everything a solver needs is closed form (float64 throughout): x_t ~ N(α_t μ, v_t I)
/// with v_t = α_t² s² + σ_t², the exact noise prediction E[ε | x_t] = σ_t (x_t − α_t μ)/v_t, and the probability-flow
/// ODE's solution, which keeps (x_t − α_t μ)/√v_t constant.
/// </summary>
internal sealed class GaussianToy(NoiseSchedule schedule, double mu = 0.3, double s = 0.5)
{
    private readonly Tensor _alphaBar = tensor(schedule.AlphasCumprod, dtype: float64);

    public NoiseSchedule Schedule => schedule;

    private double Alpha(int t) => Math.Sqrt(schedule.AlphasCumprod[t]);
    private double Variance(int t) => schedule.AlphasCumprod[t] * s * s + 1 - schedule.AlphasCumprod[t];

    /// <summary>The exact ε_θ(x_t, t) = E[ε | x_t].</summary>
    public NoisePredictor Eps => (x, t) =>
    {
        using var scope = NewDisposeScope();
        var a = _alphaBar.index_select(0, t).reshape(-1, 1, 1, 1);
        var alpha = a.sqrt();
        var sigma = (1 - a).sqrt();
        return (sigma * (x - alpha * mu) / (a * s * s + 1 - a)).MoveToOuterDisposeScope();
    };

    /// <summary>The ODE's exact x at timestep <paramref name="to"/> from x at timestep
    /// <paramref name="from"/>.</summary>
    public Tensor Flow(Tensor x, int from, int to) =>
        Alpha(to) * mu + (x - Alpha(from) * mu) * Math.Sqrt(Variance(to) / Variance(from));

    /// <summary>The exact E[x_0 | x_t] at timestep <paramref name="t"/>.</summary>
    public Tensor Denoise(Tensor x, int t) => mu + Alpha(t) * s * s * (x - Alpha(t) * mu) / Variance(t);

    /// <summary>
    /// What an ODE sampler ending in x̂_0 computes without discretisation error: the exact flow from its first to its
    /// last visited timestep, then the exact x̂_0 there.
    /// </summary>
    public Tensor ExactSample(ISampler sampler, Tensor xT) =>
        Denoise(Flow(xT, sampler.Timesteps[0], sampler.Timesteps[^1]), sampler.Timesteps[^1]);

    /// <summary>x_T for a batch of 64 images of 4×4 pixels, float64.</summary>
    public static Tensor Noise(ulong seed) => randn([64, 1, 4, 4], dtype: float64, generator: new Generator(seed));

    /// <summary>max |sampler's result − <see cref="ExactSample"/>|.</summary>
    public double Error(ISampler sampler, Tensor xT)
    {
        using var scope = NewDisposeScope();
        var result = SamplingLoop.Run(sampler, Eps, xT.clone());
        return (result - ExactSample(sampler, xT)).abs().max().item<double>();
    }
}
