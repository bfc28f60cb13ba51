using Ddpm.Diffusion;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Tests.Models;
using static TorchSharp.torch;

namespace Ddpm.Tests.Sampling;

/// <summary>DPM-Solver++ and UniPC against the closed-form probability-flow ODE of Gaussian data, and against
/// DDIM.</summary>
[Collection(GlobalRngCollection.Name)]
public class OdeSolverTests
{
    private static readonly NoiseSchedule Linear = NoiseSchedule.Linear(1000);

    /// <summary>log₂ of the error ratio when the number of intervals doubles from
    /// <paramref name="intervals"/>.</summary>
    private static (double Coarse, double Fine, double Order) Halving(GaussianToy toy, Func<int, ISampler> make, int intervals)
    {
        var xT = GaussianToy.Noise(1);
        double coarse = toy.Error(make(intervals + 1), xT), fine = toy.Error(make(2 * intervals + 1), xT);
        return (coarse, fine, Math.Log2(coarse / fine));
    }

    [Fact]
    public void Dpm_solver_2m_converges_at_second_order_ddim_at_first_and_unipc_at_least_as_fast()
    {
        // λ-uniform steps (constant h, as the convergence theory assumes) on the seed's schedule, 40 → 80 intervals.
        var toy = new GaussianToy(Linear);
        var ddim = Halving(toy, s => new DdimSampler(Linear, s, spacing: SpacingKind.Lambda), 40);
        var dpm = Halving(toy, s => new DpmSolverSampler(Linear, s, SpacingKind.Lambda, order: 2), 40);
        var unipc = Halving(toy, s => new UniPcSampler(Linear, s, SpacingKind.Lambda, order: 2), 40);
        Assert.InRange(ddim.Order, 0.8, 1.2);
        Assert.True(dpm.Order >= 1.8, $"DPM-Solver++(2M): error {dpm.Coarse:E3} → {dpm.Fine:E3}, observed order {dpm.Order:F2}");
        Assert.True(unipc.Order >= dpm.Order, $"UniPC order {unipc.Order:F2} < DPM-Solver++(2M)'s {dpm.Order:F2}");
        Assert.True(unipc.Coarse <= dpm.Coarse && unipc.Fine <= dpm.Fine,
            $"UniPC errors {unipc.Coarse:E3}, {unipc.Fine:E3} vs DPM-Solver++ {dpm.Coarse:E3}, {dpm.Fine:E3}");
        Assert.True(dpm.Fine < ddim.Fine / 10, $"2M {dpm.Fine:E3} vs DDIM {ddim.Fine:E3} at 81 steps");
    }

    [Fact]
    public void UniPC_reaches_third_order_on_a_smooth_grid_where_DPM_Solver_2M_stays_at_second()
    {
        // T = 1001 so that 1000 − 800·i/N is an integer: halving the interval in t halves every λ-step, and the grid
        // stays away from t = 0, where λ is log-singular.
        var schedule = NoiseSchedule.Linear(1001);
        var toy = new GaussianToy(schedule);
        SolverGrid Grid(int points) => new(schedule, Enumerable.Range(0, points).Select(i => 1000 - i * 800 / (points - 1)).ToArray());
        var dpm2 = Halving(toy, s => new DpmSolverSampler(Grid(s), order: 2), 200);
        var unipc = Halving(toy, s => new UniPcSampler(Grid(s), order: 2), 200);
        Assert.InRange(dpm2.Order, 1.9, 2.1);
        Assert.True(unipc.Order >= 2.7, $"UniPC (UniP-2 + UniC): observed order {unipc.Order:F2}");
    }

    [Theory]
    [InlineData(SpacingKind.Uniform)]
    [InlineData(SpacingKind.Lambda)]
    [InlineData(SpacingKind.Karras)]
    public void The_first_step_is_ddims_first_step(SpacingKind spacing)
    {
        using var scope = NewDisposeScope();
        var x = randn(3, 1, 6, 6, generator: new Generator(2));
        var eps = randn(3, 1, 6, 6, generator: new Generator(3));
        var ddim = new DdimSampler(Linear, 20, 0, spacing).Step(eps, 0, x, null);
        foreach (var solver in new ISampler[]
                 {
                     new DpmSolverSampler(Linear, 20, spacing, 1), new DpmSolverSampler(Linear, 20, spacing, 2),
                     new UniPcSampler(Linear, 20, spacing, 2),
                 })
        {
            Assert.Equal(new DdimSampler(Linear, 20, 0, spacing).Timesteps, solver.Timesteps);
            var gap = (solver.Step(eps, 0, x, null) - ddim).abs().max().item<float>();
            Assert.True(gap < 1e-5f, $"{solver.GetType().Name}: first step differs from DDIM's by {gap}");
        }
    }

    [Fact]
    public void With_every_timestep_it_agrees_with_ddim_to_the_discretisation_error()
    {
        var toy = new GaussianToy(Linear);
        var xT = GaussianToy.Noise(4);
        using var scope = NewDisposeScope();
        var ddimSampler = new DdimSampler(Linear, Linear.T);
        var ddim = SamplingLoop.Run(ddimSampler, toy.Eps, xT.clone());
        var exact = toy.ExactSample(ddimSampler, xT);
        double ddimError = (ddim - exact).abs().max().item<double>();
        Assert.InRange(ddimError, 1e-4, 2e-2); // first order at S = T: small but visible
        foreach (var solver in new ISampler[] { new DpmSolverSampler(Linear, Linear.T), new UniPcSampler(Linear, Linear.T) })
        {
            var result = SamplingLoop.Run(solver, toy.Eps, xT.clone());
            double gap = (result - ddim).abs().max().item<double>(), error = (result - exact).abs().max().item<double>();
            Assert.True(gap <= 1.1 * ddimError, $"{solver.GetType().Name} differs from DDIM by {gap:E3}, DDIM's own error is {ddimError:E3}");
            Assert.True(error < ddimError / 5, $"{solver.GetType().Name} error {error:E3} vs DDIM {ddimError:E3}");
        }
    }

    [Fact]
    public void Guidance_with_w_zero_samples_like_the_conditional_model()
    {
        using var scope = NewDisposeScope();
        manual_seed(7);
        using var model = new UNet(TestModels.Tiny(8) with { NumClasses = 3 });
        model.eval();
        var schedule = NoiseSchedule.Linear(50, 1e-4, 0.2);
        var labels = tensor(new long[] { 0, 2 });
        var xT = randn(2, 1, 8, 8, generator: new Generator(5));
        Tensor Sample(NoisePredictor predictor) =>
            SamplingLoop.Run(new DpmSolverSampler(schedule, 6, SpacingKind.Lambda), predictor, xT.clone());
        var conditional = Sample((x, t) => model.forward(x, t, labels));
        var guided0 = Sample(ClassifierFreeGuidance.Guided(model, labels, 0));
        var guided2 = Sample(ClassifierFreeGuidance.Guided(model, labels, 2));
        Assert.True(guided0.eq(conditional).all().item<bool>(), "w = 0 differs from conditional sampling");
        Assert.True((guided2 - conditional).abs().max().item<float>() > 1e-3f, "w = 2 sampled like w = 0");
    }

    [Fact]
    public void The_sde_variant_samples_the_data_law_with_the_loops_noise()
    {
        // Exact ε for x_0 ~ N(μ, s²): the samples are E[x_0 | x_τ1] at the last timestep τ_1 = 0, whose law is
        // N(μ, ᾱs⁴/(ᾱs² + 1 − ᾱ)); 16,384 values pin mean and std to ±4 standard errors.
        const double mu = 0.3, s = 0.5;
        var toy = new GaussianToy(Linear, mu, s);
        using var scope = NewDisposeScope();
        var xT = randn([256, 1, 8, 8], dtype: float64, generator: new Generator(11));
        var sampler = new DpmSolverSampler(Linear, 50, SpacingKind.Lambda, order: 2, stochastic: true);
        var a = SamplingLoop.Run(sampler, toy.Eps, xT.clone(), new Generator(12));
        var b = SamplingLoop.Run(sampler, toy.Eps, xT.clone(), new Generator(12));
        var other = SamplingLoop.Run(sampler, toy.Eps, xT.clone(), new Generator(13));
        Assert.True(a.eq(b).all().item<bool>(), "the same noise gave different samples");
        Assert.True((a - other).abs().max().item<double>() > 0.1, "other noise gave the same samples");

        double alphaBar = Linear.AlphasCumprod[0], n = a.numel();
        double std = Math.Sqrt(alphaBar * s * s * s * s / (alphaBar * s * s + 1 - alphaBar));
        double mean = a.mean().item<double>(), observedStd = a.std().item<double>();
        Assert.True(Math.Abs(mean - mu) < 4 * std / Math.Sqrt(n), $"mean {mean:F4} vs {mu}");
        Assert.True(Math.Abs(observedStd - std) < 4 * std / Math.Sqrt(2 * n), $"std {observedStd:F4} vs {std:F4}");
    }

    [Fact]
    public void A_multistep_solver_takes_steps_in_order_and_restarts_at_step_zero()
    {
        var toy = new GaussianToy(Linear);
        var xT = GaussianToy.Noise(6);
        using var scope = NewDisposeScope();
        foreach (var solver in new ISampler[] { new DpmSolverSampler(Linear, 10), new UniPcSampler(Linear, 10) })
        {
            var first = SamplingLoop.Run(solver, toy.Eps, xT.clone());
            var second = SamplingLoop.Run(solver, toy.Eps, xT.clone()); // same instance, a new run
            Assert.True(first.eq(second).all().item<bool>(), $"{solver.GetType().Name}: a second run differs");
            solver.Step(toy.Eps(xT, full(64, (long)solver.Timesteps[0], dtype: int64)), 0, xT, null);
            var e = Assert.Throws<InvalidOperationException>(() => solver.Step(toy.Eps(xT, full(64, 0L, dtype: int64)), 2, xT, null));
            Assert.Contains("in order", e.Message);
        }
    }

    [Fact]
    public void Clipping_and_dynamic_thresholding_keep_x0_in_the_data_range()
    {
        // Data far outside [−1, 1]: without correction the result follows it, with either correction it stays inside.
        var toy = new GaussianToy(Linear, mu: 2.0, s: 0.5);
        var xT = GaussianToy.Noise(7);
        using var scope = NewDisposeScope();
        var plain = SamplingLoop.Run(new DpmSolverSampler(Linear, 10, SpacingKind.Lambda), toy.Eps, xT.clone());
        Assert.True(plain.max().item<double>() > 1.5);
        foreach (var correction in new[] { new X0Correction { Clip = true }, new X0Correction { DynamicThreshold = 0.995 } })
        {
            var result = SamplingLoop.Run(new UniPcSampler(Linear, 10, SpacingKind.Lambda, correction: correction), toy.Eps, xT.clone());
            Assert.True(result.abs().max().item<double>() <= 1.0 + 1e-12, $"{correction}: max |x| = {result.abs().max().item<double>()}");
        }
    }

    [Fact]
    public void Dynamic_thresholding_rescales_by_the_per_image_percentile()
    {
        using var scope = NewDisposeScope();
        // Image 0: |x| = 0, 0.5, 1, …, 4.5 (10 values); its 0.8-quantile (linear interpolation) is 3.6.
        // Image 1 lies inside [−1, 1]: s = max(1, q) = 1, so it is unchanged.
        var a = arange(10, dtype: float64) * 0.5 * tensor(new double[] { 1, -1, 1, -1, 1, -1, 1, -1, 1, -1 }, dtype: float64);
        var b = linspace(-0.9, 0.9, 10, dtype: float64);
        var x0 = stack([a, b]).reshape(2, 1, 2, 5);
        var result = DataPrediction.DynamicThreshold(x0, 0.8).reshape(2, 10);
        var expected = a.clamp(-3.6, 3.6) / 3.6;
        Assert.True((result[0] - expected).abs().max().item<double>() < 1e-12);
        Assert.True(result[1].eq(b).all().item<bool>());
        Assert.Throws<ArgumentOutOfRangeException>(() => DataPrediction.DynamicThreshold(x0, 1.0));
    }

    [Fact]
    public void Phi_functions_match_their_closed_forms_on_both_branches()
    {
        foreach (var z in new[] { -3.0, -0.7, -1e-3, 1e-3, 0.4, 2.5 })
        {
            double e = Math.Exp(z);
            double Rel(double a, double b) => Math.Abs(a - b) / Math.Abs(b);
            Assert.True(Rel(ExponentialIntegrator.Phi(1, z), (e - 1) / z) < 1e-12 * (Math.Abs(z) < 0.01 ? 1e4 : 1), $"φ_1({z})");
            if (Math.Abs(z) > 0.3)
            {
                Assert.True(Rel(ExponentialIntegrator.Phi(2, z), (e - 1 - z) / (z * z)) < 1e-12, $"φ_2({z})");
                Assert.True(Rel(ExponentialIntegrator.Phi(3, z), (e - 1 - z - z * z / 2) / (z * z * z)) < 1e-11, $"φ_3({z})");
            }
        }
        // Near 0, where the closed forms cancel: φ_k(0) = 1/k!, φ_2(z) = 1/2 + z/6 + z²/24 + O(z³).
        Assert.Equal(1.0 / 6, ExponentialIntegrator.Phi(3, 0), 15);
        Assert.Equal(0.5 + 1e-6 / 6 + 1e-12 / 24, ExponentialIntegrator.Phi(2, 1e-6), 15);
        double expm1 = ExponentialIntegrator.Expm1(-1e-8), series = -1e-8 + 0.5e-16;
        Assert.True(Math.Abs(expm1 - series) < 1e-15 * 1e-8, $"expm1(−1e−8) = {expm1:R}");
    }
}
