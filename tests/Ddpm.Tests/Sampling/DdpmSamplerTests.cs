using Ddpm.Diffusion;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Tests.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Sampling;

public class DdpmSamplerTests
{
    private static readonly GaussianDiffusion Diffusion = new(NoiseSchedule.Linear(1000, 1e-4, 0.02));

    private static double Beta(int t) => 1e-4 + t * (0.02 - 1e-4) / 999;

    private static double AlphaBar(int t)
    {
        double a = 1;
        for (int i = 0; i <= t; i++) a *= 1 - Beta(i);
        return a;
    }

    [Fact]
    public void Timesteps_run_from_T_minus_1_down_to_0()
    {
        var sampler = new DdpmSampler(new GaussianDiffusion(NoiseSchedule.Linear(5)));
        Assert.Equal(new[] { 4, 3, 2, 1, 0 }, sampler.Timesteps);
    }

    [Fact]
    public void The_last_step_adds_no_noise_and_returns_the_mean()
    {
        using var scope = NewDisposeScope();
        var sampler = new DdpmSampler(Diffusion);
        using var g = new Generator(1, new Device("cpu"));
        var x = randn(new long[] { 2, 1, 8, 8 }, generator: g);
        var eps = full(new long[] { 2, 1, 8, 8 }, 0.3f);
        int last = sampler.Timesteps.Count - 1;
        Assert.Equal(0, sampler.Timesteps[last]);

        Assert.False(sampler.UsesNoise(last));
        Assert.True(sampler.UsesNoise(last - 1));
        var a = sampler.Step(eps, last, x, randn(x.shape, generator: new Generator(100)));
        var b = sampler.Step(eps, last, x, null);
        Assert.True(a.eq(b).all().item<bool>(), "the t = 0 step depends on the noise");
        Assert.Throws<ArgumentException>(() => sampler.Step(eps, last - 1, x, null));

        // μ = (x − β_0/√(1 − ᾱ_0) ε)/√α_0, with 1 − ᾱ_0 = β_0.
        var expected = (x.to(float64) - Beta(0) / Math.Sqrt(Beta(0)) * 0.3) / Math.Sqrt(1 - Beta(0));
        Assert.True((a.to(float64) - expected).abs().max().item<double>() <= 1e-5, "last step is not the mean");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(20)]
    [InlineData(300)]
    public void The_step_noise_has_std_sqrt_beta_tilde_or_sqrt_beta(int t)
    {
        using var scope = NewDisposeScope();
        const int side = 1000; // 10^6 pixels
        const long n = side * side;
        var x = zeros(new long[] { 1, 1, side, side });
        var eps = zeros(new long[] { 1, 1, side, side });
        int index = 999 - t;
        var tilde = new DdpmSampler(Diffusion, VarianceKind.BetaTilde);
        var beta = new DdpmSampler(Diffusion, VarianceKind.Beta);
        Assert.Equal(t, tilde.Timesteps[index]);

        // With x = ε = 0 the mean is 0, so the step is σ_t z.
        using var g = new Generator(42, new Device("cpu"));
        double stdTilde = tilde.Step(eps, index, x, randn(x.shape, generator: g)).to(float64).std().item<double>();
        double stdBeta = beta.Step(eps, index, x, randn(x.shape, generator: g)).to(float64).std().item<double>();

        double expectedTilde = Math.Sqrt(Beta(t) * (1 - AlphaBar(t - 1)) / (1 - AlphaBar(t)));
        double expectedBeta = Math.Sqrt(Beta(t));
        // The sample std of n Gaussian draws has standard error σ/√(2n); allow 5 of them.
        double rel = 5 / Math.Sqrt(2.0 * n);
        Assert.InRange(stdTilde, expectedTilde * (1 - rel), expectedTilde * (1 + rel));
        Assert.InRange(stdBeta, expectedBeta * (1 - rel), expectedBeta * (1 + rel));
        double ratio = stdTilde / stdBeta;
        Assert.InRange(ratio, expectedTilde / expectedBeta * (1 - 2 * rel), expectedTilde / expectedBeta * (1 + 2 * rel));
        if (t == 1) Assert.InRange(ratio, 0.67, 0.68); // β̃_1/β_1 = β_0/(β_0 + β_1 − β_0β_1) = 1e-4/2.199e-4 ≈ 0.4548: std ratio ≈ 0.674
    }

    [Fact]
    public void Sampling_with_the_same_seed_is_identical_and_a_different_seed_differs()
    {
        using var scope = NewDisposeScope();
        manual_seed(3);
        using var model = new UNet(TestModels.Tiny(8));
        model.eval();
        var diffusion = new GaussianDiffusion(NoiseSchedule.Linear(10, 1e-4, 0.2));
        var sampler = new DdpmSampler(diffusion);
        NoisePredictor predictor = (x, t) => model.forward(x, t);
        long[] shape = [2, 1, 8, 8];

        Tensor Sample(ulong seed)
        {
            using var g = new Generator(seed, new Device("cpu"));
            return SamplingLoop.Run(sampler, predictor, shape, new Device("cpu"), g);
        }

        var a = Sample(123);
        var b = Sample(123);
        var c = Sample(124);
        Assert.Equal(shape, a.shape);
        Assert.True(isfinite(a).all().item<bool>());
        Assert.True(a.eq(b).all().item<bool>(), "same seed gave different samples");
        Assert.True((a - c).abs().max().item<float>() > 1e-3, "different seeds gave the same samples");
    }

    [Fact]
    public void The_sampling_loop_visits_every_timestep_in_order()
    {
        using var scope = NewDisposeScope();
        var diffusion = new GaussianDiffusion(NoiseSchedule.Linear(6));
        var sampler = new DdpmSampler(diffusion);
        var seenByModel = new List<long>();
        var seenByCallback = new List<int>();
        using var g = new Generator(1, new Device("cpu"));
        var result = SamplingLoop.Run(sampler, (x, t) => { seenByModel.Add(t[0].item<long>()); return zeros_like(x); },
            new long[] { 1, 1, 2, 2 }, new Device("cpu"), g, (i, t, x) => seenByCallback.Add(t));
        Assert.Equal(new long[] { 5, 4, 3, 2, 1, 0 }, seenByModel);
        Assert.Equal(new[] { 5, 4, 3, 2, 1, 0 }, seenByCallback);
        Assert.Equal(new long[] { 1, 1, 2, 2 }, result.shape);
    }
}
