using static TorchSharp.torch;
using Ddpm.Diffusion;
using Ddpm.Sampling;

namespace Ddpm.Tests.Sampling;

public class SolverSpacingAndOptionsTests
{
    private static readonly NoiseSchedule Linear = NoiseSchedule.Linear(1000);
    private static readonly NoiseSchedule Cosine = NoiseSchedule.Cosine(1000);

    /// <summary>λ_t = ½ log(ᾱ_t/(1 − ᾱ_t)) written out here, independently of the library.</summary>
    private static double Lambda(NoiseSchedule s, int t) => 0.5 * Math.Log(s.AlphasCumprod[t] / (1 - s.AlphasCumprod[t]));

    /// <summary>The fractional timestep where λ, linear between integer timesteps, equals <paramref name="target"/> (by
    /// a scan).</summary>
    private static double Fractional(NoiseSchedule s, double target)
    {
        if (Math.Abs(target - Lambda(s, 0)) < 1e-12) return 0; // the end points, up to rounding
        if (Math.Abs(target - Lambda(s, s.T - 1)) < 1e-12) return s.T - 1;
        for (int t = 0; t + 1 < s.T; t++)
        {
            double a = Lambda(s, t), b = Lambda(s, t + 1);
            if (target <= a && target >= b) return t + (a - target) / (a - b);
        }
        throw new InvalidOperationException("λ outside the schedule");
    }

    [Theory]
    [InlineData(SpacingKind.Lambda)]
    [InlineData(SpacingKind.Karras)]
    public void Lambda_and_karras_spacing_give_s_distinct_ascending_timesteps_from_0_to_t_minus_1(SpacingKind kind)
    {
        foreach (var schedule in new[] { Linear, Cosine, NoiseSchedule.Linear(200, 1e-4, 0.1) })
            foreach (var s in new[] { 1, 2, 10, 50, 150, 200 })
            {
                if (s > schedule.T) continue;
                var ts = TimestepSpacing.Ascending(schedule, s, kind);
                Assert.Equal(s, ts.Length);
                Assert.True(ts.Zip(ts.Skip(1)).All(p => p.First < p.Second), $"{kind} S = {s}: not strictly ascending");
                Assert.Equal(schedule.T - 1, ts[^1]);
                if (s > 1) Assert.Equal(0, ts[0]);
            }
        // With S = T every timestep is visited.
        Assert.Equal(Enumerable.Range(0, 1000), TimestepSpacing.Ascending(Linear, 1000, kind));
    }

    [Fact]
    public void Lambda_spacing_rounds_points_evenly_spaced_in_log_snr()
    {
        const int s = 12;
        var ts = TimestepSpacing.Ascending(Linear, s, SpacingKind.Lambda);
        double max = Lambda(Linear, 0), min = Lambda(Linear, 999);
        for (int i = 0; i < s; i++)
        {
            double target = max + i * (min - max) / (s - 1);
            Assert.True(Math.Abs(ts[i] - Fractional(Linear, target)) <= 0.5, $"point {i}: t = {ts[i]}, λ-target at t = {Fractional(Linear, target):F2}");
        }
    }

    [Fact]
    public void Karras_spacing_rounds_sigmas_evenly_spaced_in_sigma_to_the_one_over_rho()
    {
        // Karras et al. 2022, eq. 5 with ρ = 7 and σ = √((1 − ᾱ)/ᾱ) = e^{−λ}, from σ_max (t = T−1) down to σ_min (t =
        // 0).
        const int s = 12;
        var ts = TimestepSpacing.Ascending(Linear, s, SpacingKind.Karras).Reverse().ToArray();
        double sigmaMax = Math.Sqrt((1 - Linear.AlphasCumprod[999]) / Linear.AlphasCumprod[999]);
        double sigmaMin = Math.Sqrt((1 - Linear.AlphasCumprod[0]) / Linear.AlphasCumprod[0]);
        for (int i = 0; i < s; i++)
        {
            double sigma = Math.Pow(Math.Pow(sigmaMax, 1 / 7.0) + i / (s - 1.0) * (Math.Pow(sigmaMin, 1 / 7.0) - Math.Pow(sigmaMax, 1 / 7.0)), 7);
            Assert.True(Math.Abs(ts[i] - Fractional(Linear, -Math.Log(sigma))) <= 0.5, $"point {i}: t = {ts[i]}, σ = {sigma:G4}");
        }
        // Karras puts more points at low noise than uniform spacing does, and lambda spacing more still.
        int Below(SpacingKind k) => TimestepSpacing.Ascending(Linear, 20, k).Count(t => t < 100);
        Assert.True(Below(SpacingKind.Uniform) < Below(SpacingKind.Karras) && Below(SpacingKind.Karras) < Below(SpacingKind.Lambda),
            $"points below t = 100: uniform {Below(SpacingKind.Uniform)}, karras {Below(SpacingKind.Karras)}, lambda {Below(SpacingKind.Lambda)}");
    }

    [Fact]
    public void Spacings_that_need_the_schedule_refuse_t_alone()
    {
        var e = Assert.Throws<ArgumentException>(() => TimestepSpacing.Ascending(1000, 10, SpacingKind.Karras));
        Assert.Contains("karras", e.Message);
    }

    [Fact]
    public void Sampler_options_build_each_solver_with_its_default_spacing()
    {
        var dpm = Assert.IsType<DpmSolverSampler>(new SamplerOptions { Kind = SamplerKind.DpmSolver2M, Steps = 20 }.Create(Linear));
        Assert.Equal((2, false), (dpm.Order, dpm.Stochastic));
        Assert.Equal(TimestepSpacing.Ascending(Linear, 20, SamplerOptions.DefaultSpacing(SamplerKind.DpmSolver2M)).Reverse(), dpm.Timesteps);
        var sde = Assert.IsType<DpmSolverSampler>(new SamplerOptions { Kind = SamplerKind.DpmSolver2MSde, Steps = 20 }.Create(Linear));
        Assert.True(sde.Stochastic);
        var unipc = Assert.IsType<UniPcSampler>(new SamplerOptions { Kind = SamplerKind.UniPc, Steps = 10, Spacing = SpacingKind.Karras }.Create(Linear));
        Assert.Equal((2, true), (unipc.Order, unipc.Corrector));
        Assert.Equal(TimestepSpacing.Ascending(Linear, 10, SpacingKind.Karras).Reverse(), unipc.Timesteps);
        // DDIM and respaced DDPM take the new spacings too.
        Assert.Equal(TimestepSpacing.Ascending(Linear, 10, SpacingKind.Lambda).Reverse(),
            new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 10, Spacing = SpacingKind.Lambda }.Create(Linear).Timesteps);
        Assert.Equal(TimestepSpacing.Ascending(Linear, 10, SpacingKind.Karras).Reverse(),
            new SamplerOptions { Steps = 10, Spacing = SpacingKind.Karras }.Create(Linear).Timesteps);
    }

    [Fact]
    public void Solvers_default_to_twenty_karras_steps_and_ddpm_and_ddim_to_all_t_uniform_ones()
    {
        Assert.Equal(SpacingKind.Karras, SamplerOptions.DefaultSpacing(SamplerKind.UniPc));
        Assert.Equal(SpacingKind.Uniform, SamplerOptions.DefaultSpacing(SamplerKind.Ddim));
        var unipc = new SamplerOptions { Kind = SamplerKind.UniPc }.Create(Linear);
        Assert.Equal(TimestepSpacing.Ascending(Linear, 20, SpacingKind.Karras).Reverse(), unipc.Timesteps);
        Assert.Equal(10, new SamplerOptions { Kind = SamplerKind.DpmSolver2M }.Create(NoiseSchedule.Linear(10)).Timesteps.Count);
        Assert.Equal(1000, new SamplerOptions { Kind = SamplerKind.Ddim }.Create(Linear).Timesteps.Count);
        Assert.Equal(1000, new SamplerOptions().Create(Linear).Timesteps.Count);
        Assert.Equal("unipc (karras)", new SamplerOptions { Kind = SamplerKind.UniPc }.Describe(1000));
        Assert.Equal("dpmpp-2m (lambda), dynamic threshold 0.995",
            new SamplerOptions { Kind = SamplerKind.DpmSolver2M, Spacing = SpacingKind.Lambda, DynamicThreshold = 0.995 }.Describe(1000));
        Assert.Equal("ddpm", new SamplerOptions().Describe(1000));
        Assert.Equal("ddpm (respaced, uniform)", new SamplerOptions { Steps = 50 }.Describe(1000));
        Assert.Equal("ddim (eta 0.5, quadratic)", new SamplerOptions { Kind = SamplerKind.Ddim, Eta = 0.5, Spacing = SpacingKind.Quadratic }.Describe(1000));
    }

    [Fact]
    public void Only_the_sde_variant_asks_for_noise_and_not_on_its_last_step()
    {
        var sde = new SamplerOptions { Kind = SamplerKind.DpmSolver2MSde, Steps = 5 }.Create(Linear);
        Assert.Equal([true, true, true, true, false], Enumerable.Range(0, 5).Select(sde.UsesNoise));
        foreach (var kind in new[] { SamplerKind.DpmSolver2M, SamplerKind.UniPc })
        {
            var ode = new SamplerOptions { Kind = kind, Steps = 5 }.Create(Linear);
            Assert.All(Enumerable.Range(0, 5), i => Assert.False(ode.UsesNoise(i)));
        }
        using var x = randn(2, 1, 4, 4, generator: new Generator(1));
        var e = Assert.Throws<ArgumentException>(() => sde.Step(zeros_like(x), 0, x, null));
        Assert.Contains("noise", e.Message);
    }

    [Theory]
    [InlineData(SamplerKind.DpmSolver2M, 0, null, null, "steps")]
    [InlineData(SamplerKind.UniPc, 1001, null, null, "steps")]
    [InlineData(SamplerKind.DpmSolver2M, 10, 0.5, null, "eta")]
    [InlineData(SamplerKind.Ddim, 10, 0.0, 0.99, "dynamic threshold")]
    [InlineData(SamplerKind.UniPc, 10, 0.0, 1.0, "dynamic threshold")]
    [InlineData(SamplerKind.DpmSolver2MSde, 10, 0.0, 0.0, "dynamic threshold")]
    [InlineData((SamplerKind)99, 10, 0.0, null, "sampler")]
    public void Sampler_options_reject_bad_settings_naming_them(SamplerKind kind, int steps, double? eta, double? threshold, string setting)
    {
        var e = Assert.Throws<ArgumentException>(() =>
            new SamplerOptions { Kind = kind, Steps = steps, Eta = eta ?? 0, DynamicThreshold = threshold }.Create(Linear));
        Assert.Contains(setting, e.Message);
    }

    [Fact]
    public void Sampler_options_reject_an_unknown_spacing()
    {
        var e = Assert.Throws<ArgumentException>(() => new SamplerOptions { Kind = SamplerKind.UniPc, Steps = 10, Spacing = (SpacingKind)42 }.Create(Linear));
        Assert.Contains("spacing", e.Message);
    }
}
