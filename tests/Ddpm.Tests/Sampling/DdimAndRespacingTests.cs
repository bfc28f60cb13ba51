using Ddpm.Diffusion;
using Ddpm.Sampling;
using static TorchSharp.torch;

namespace Ddpm.Tests.Sampling;

public class DdimAndRespacingTests
{
    private static readonly NoiseSchedule Linear = NoiseSchedule.Linear(1000);

    /// <summary>ε_θ that knows the single training point x0: ε = (x − √ᾱ_t x0)/√(1 − ᾱ_t).</summary>
    private static NoisePredictor Oracle(NoiseSchedule s, Tensor x0) => (x, t) =>
    {
        var a = tensor(s.AlphasCumprod.Select(v => (float)v).ToArray()).index_select(0, t).reshape(-1, 1, 1, 1);
        return (x - a.sqrt() * x0) / (1 - a).sqrt();
    };

    [Fact]
    public void Ddim_with_eta_zero_is_deterministic_given_x_T()
    {
        using var scope = NewDisposeScope();
        var model = Oracle(Linear, full(1, 1, 4, 4, 0.3f));
        var xT = randn(2, 1, 4, 4, generator: new Generator(3));
        var a = SamplingLoop.Run(new DdimSampler(Linear, 20, eta: 0), (x, t) => model(x, t) * 0.9, xT.clone(), new Generator(1));
        var b = SamplingLoop.Run(new DdimSampler(Linear, 20, eta: 0), (x, t) => model(x, t) * 0.9, xT.clone(), new Generator(2));
        Assert.True(a.eq(b).all().item<bool>());
    }

    [Fact]
    public void Ddim_with_a_perfect_noise_oracle_recovers_the_known_x0()
    {
        using var scope = NewDisposeScope();
        var x0 = rand(1, 1, 6, 6, generator: new Generator(5)) * 2 - 1;
        var xT = randn(1, 1, 6, 6, generator: new Generator(6));
        foreach (var steps in new[] { 10, 50 })
        {
            var result = SamplingLoop.Run(new DdimSampler(Linear, steps, eta: 0), Oracle(Linear, x0), xT.clone());
            Assert.True((result - x0).abs().max().item<float>() < 1e-3f, $"S = {steps}: max error {(result - x0).abs().max().item<float>()}");
        }
    }

    [Fact]
    public void Ddim_with_eta_one_and_every_step_is_the_ddpm_step_with_beta_tilde()
    {
        using var scope = NewDisposeScope();
        var diffusion = new GaussianDiffusion(Linear);
        var ddim = new DdimSampler(Linear, Linear.T, eta: 1.0);
        var ddpm = new DdpmSampler(diffusion);
        Assert.Equal(ddpm.Timesteps, ddim.Timesteps);
        var x = randn(3, 1, 5, 5, generator: new Generator(7));
        var eps = randn(3, 1, 5, 5, generator: new Generator(8));
        foreach (var t in new[] { 999, 500, 37, 1 })
        {
            int index = ddim.Timesteps.ToList().IndexOf(t);
            Assert.Equal(Math.Sqrt(Linear.PosteriorVariance[t]), ddim.Sigma(index), 9);
            // Same z: the two updates must agree exactly (mean and σ).
            var z = randn(x.shape, generator: new Generator(11));
            Assert.True(ddim.UsesNoise(index) && ddpm.UsesNoise(index));
            var viaDdim = ddim.Step(eps, index, x, z);
            var viaDdpm = ddpm.Step(eps, index, x, z);
            var gap = (viaDdim - viaDdpm).abs().max().item<float>();
            Assert.True(gap < 2e-5f, $"t = {t}: DDIM(η=1) and DDPM differ by {gap}");
        }
    }

    [Fact]
    public void Spacing_gives_s_distinct_ascending_timesteps_from_0()
    {
        foreach (var kind in new[] { SpacingKind.Uniform, SpacingKind.Quadratic })
            foreach (var s in new[] { 1, 10, 50, 250, 1000 })
            {
                var ts = TimestepSpacing.Ascending(1000, s, kind);
                Assert.Equal(s, ts.Length);
                Assert.Equal(s, ts.Distinct().Count());
                Assert.True(ts.Zip(ts.Skip(1)).All(p => p.First < p.Second));
                Assert.True(ts[0] >= 0 && ts[^1] <= 999);
                if (s > 1) Assert.Equal(0, ts[0]);
            }
        Assert.Equal([0, 333, 666, 999], TimestepSpacing.Ascending(1000, 4));
        Assert.Throws<ArgumentOutOfRangeException>(() => TimestepSpacing.Ascending(1000, 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => TimestepSpacing.Ascending(1000, 1001));
    }

    [Fact]
    public void Respacing_keeps_alpha_bar_at_the_visited_timesteps()
    {
        var sampler = new RespacedDdpmSampler(Linear, 100);
        var visited = sampler.Timesteps.Reverse().ToArray();
        for (int i = 0; i < visited.Length; i++)
            Assert.Equal(Linear.AlphasCumprod[visited[i]], sampler.Respaced.AlphasCumprod[i], 12);
        // With S = T respacing changes nothing.
        var full = new RespacedDdpmSampler(Linear, 1000);
        for (int t = 0; t < 1000; t += 111) Assert.Equal(Linear.Betas[t], full.Respaced.Betas[t], 12);
    }

    [Fact]
    public void Sampler_options_reject_bad_steps_and_eta()
    {
        Assert.Throws<ArgumentException>(() => new SamplerOptions { Steps = 0 }.Create(Linear));
        Assert.Throws<ArgumentException>(() => new SamplerOptions { Steps = 1001 }.Create(Linear));
        Assert.Throws<ArgumentException>(() => new SamplerOptions { Kind = SamplerKind.Ddim, Eta = 1.5 }.Create(Linear));
        Assert.Throws<ArgumentException>(() => new SamplerOptions { Kind = SamplerKind.Ddim, Eta = -0.1 }.Create(Linear));
        Assert.IsType<DdpmSampler>(new SamplerOptions().Create(Linear));
        Assert.IsType<RespacedDdpmSampler>(new SamplerOptions { Steps = 100 }.Create(Linear));
        Assert.IsType<DdimSampler>(new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 50 }.Create(Linear));
    }
}
