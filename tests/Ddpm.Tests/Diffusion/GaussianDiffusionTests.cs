using Ddpm.Diffusion;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Diffusion;

public class GaussianDiffusionTests
{
    private static readonly NoiseSchedule Schedule = NoiseSchedule.Linear(1000, 1e-4, 0.02);
    private static readonly GaussianDiffusion Diffusion = new(Schedule);

    /// <summary>ᾱ_t from the linear schedule, computed here without NoiseSchedule.</summary>
    private static double AlphaBar(int t)
    {
        double a = 1;
        for (int i = 0; i <= t; i++) a *= 1 - (1e-4 + i * (0.02 - 1e-4) / 999);
        return a;
    }

    private static double Beta(int t) => 1e-4 + t * (0.02 - 1e-4) / 999;

    private static double[] D(Tensor t) => t.to(float64).cpu().contiguous().data<double>().ToArray();

    [Theory]
    [InlineData(0, 0.7)]
    [InlineData(100, -0.4)]
    [InlineData(600, 1.0)]
    public void QSample_has_the_forward_process_mean_and_variance(int t, double x0Value)
    {
        using var scope = NewDisposeScope();
        const int n = 200_000;
        using var g = new Generator(1234, new Device("cpu"));
        var x0 = full(new long[] { n, 1, 1, 1 }, x0Value, dtype: float32);
        var noise = randn(new long[] { n, 1, 1, 1 }, dtype: float32, generator: g);
        var xt = Diffusion.QSample(x0, full(n, (long)t, dtype: int64), noise).to(float64);

        double abar = AlphaBar(t);
        double expectedMean = Math.Sqrt(abar) * x0Value, expectedVar = 1 - abar;
        double mean = xt.mean().item<double>(), variance = xt.var().item<double>();
        // Standard errors of the sample mean and the sample variance of a Gaussian.
        double seMean = Math.Sqrt(expectedVar / n), seVar = expectedVar * Math.Sqrt(2.0 / (n - 1));
        Assert.InRange(mean, expectedMean - 5 * seMean, expectedMean + 5 * seMean);
        Assert.InRange(variance, expectedVar - 5 * seVar, expectedVar + 5 * seVar);
    }

    [Fact]
    public void QMeanVariance_returns_sqrt_alpha_bar_x0_and_one_minus_alpha_bar()
    {
        using var scope = NewDisposeScope();
        var x0 = tensor(new[] { 0.5, -1.0, 2.0 }, dtype: float64).reshape(3, 1, 1, 1);
        var t = tensor(new long[] { 0, 250, 999 });
        var (mean, variance) = Diffusion.QMeanVariance(x0, t);
        var m = D(mean.flatten());
        var v = D(variance.flatten());
        int[] ts = [0, 250, 999];
        double[] xs = [0.5, -1.0, 2.0];
        for (int i = 0; i < 3; i++)
        {
            Assert.Equal(Math.Sqrt(AlphaBar(ts[i])) * xs[i], m[i], 6);
            Assert.Equal(1 - AlphaBar(ts[i]), v[i], 1e-6 * (1 - AlphaBar(ts[i])) + 1e-9);
        }
    }

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(50)]
    [InlineData(487)]
    [InlineData(999)]
    public void Posterior_equals_the_normalised_product_of_the_two_gaussians(int t)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(7, new Device("cpu"));
        var x0 = randn(new long[] { 4, 1, 3, 3 }, dtype: float64, generator: g).clamp(-1, 1);
        var xt = randn(new long[] { 4, 1, 3, 3 }, dtype: float64, generator: g);
        var post = Diffusion.QPosteriorMeanVariance(x0, xt, full(4, (long)t, dtype: int64));

        // q(x_t | x_{t−1}) = N(√α_t x_{t−1}, β_t) as a function of x_{t−1}, times q(x_{t−1} | x_0) = N(√ᾱ_{t−1} x0, 1 −
        // ᾱ_{t−1}).
        double abarPrev = AlphaBar(t - 1), beta = Beta(t), alpha = 1 - beta;
        double precision = 1 / (1 - abarPrev) + alpha / beta;
        double expectedVar = 1 / precision;
        var x0s = D(x0.flatten());
        var xts = D(xt.flatten());
        var means = D(post.Mean.flatten());
        for (int i = 0; i < x0s.Length; i++)
        {
            double expected = (Math.Sqrt(abarPrev) * x0s[i] / (1 - abarPrev) + Math.Sqrt(alpha) * xts[i] / beta) / precision;
            Assert.True(Math.Abs(means[i] - expected) <= 1e-6 * (1 + Math.Abs(expected)), $"mean[{i}] {means[i]} vs {expected} at t={t}");
        }
        Assert.All(D(post.Variance), v => Assert.True(Math.Abs(v - expectedVar) <= 1e-6 * expectedVar, $"variance {v} vs {expectedVar}"));
        Assert.All(D(post.LogVariance), lv => Assert.True(Math.Abs(lv - Math.Log(expectedVar)) <= 1e-5, $"log variance {lv} vs {Math.Log(expectedVar)}"));
    }

    [Fact]
    public void Posterior_at_t0_is_a_point_mass_at_x0()
    {
        using var scope = NewDisposeScope();
        var x0 = tensor(new[] { 0.3, -0.9 }, dtype: float64).reshape(2, 1, 1, 1);
        var xt = tensor(new[] { 1.7, 0.2 }, dtype: float64).reshape(2, 1, 1, 1);
        var post = Diffusion.QPosteriorMeanVariance(x0, xt, zeros(2, dtype: int64));
        var m = D(post.Mean.flatten());
        Assert.Equal(0.3, m[0], 6);
        Assert.Equal(-0.9, m[1], 6);
        Assert.All(D(post.Variance), v => Assert.Equal(0.0, v));
    }

    [Theory]
    [InlineData(0)]
    [InlineData(10)]
    [InlineData(500)]
    [InlineData(999)]
    public void PredictX0FromEps_and_PredictEpsFromX0_are_inverses(int t)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(11, new Device("cpu"));
        var xt = randn(new long[] { 3, 1, 4, 4 }, dtype: float64, generator: g);
        var eps = randn(new long[] { 3, 1, 4, 4 }, dtype: float64, generator: g);
        var tt = full(3, (long)t, dtype: int64);
        var x0 = Diffusion.PredictX0FromEps(xt, tt, eps);
        var epsBack = Diffusion.PredictEpsFromX0(xt, tt, x0);
        Assert.True((epsBack - eps).abs().max().item<double>() <= 1e-9, "eps → x0 → eps does not round-trip");
        var x0Back = Diffusion.PredictX0FromEps(xt, tt, Diffusion.PredictEpsFromX0(xt, tt, x0));
        Assert.True((x0Back - x0).abs().max().item<double>() <= 1e-9 * (1 + x0.abs().max().item<double>()), "x0 → eps → x0 does not round-trip");

        // And x0 solves the forward process: x_t = √ᾱ x0 + √(1 − ᾱ) ε (ᾱ computed independently).
        double abar = AlphaBar(t);
        var rebuilt = Math.Sqrt(abar) * x0 + Math.Sqrt(1 - abar) * eps;
        Assert.True((rebuilt - xt).abs().max().item<double>() <= 1e-5, "predicted x0 does not reproduce x_t");
    }

    [Theory]
    [InlineData(1)]
    [InlineData(10)]
    [InlineData(500)]
    [InlineData(999)]
    public void Model_mean_from_eps_equals_the_posterior_mean_at_the_predicted_x0(int t)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(5, new Device("cpu"));
        var xt = randn(new long[] { 2, 1, 4, 4 }, dtype: float64, generator: g);
        var eps = randn(new long[] { 2, 1, 4, 4 }, dtype: float64, generator: g);
        var tt = full(2, (long)t, dtype: int64);
        var p = Diffusion.PMeanVarianceFromEps(xt, tt, eps);
        var viaPosterior = Diffusion.QPosteriorMeanVariance(Diffusion.PredictX0FromEps(xt, tt, eps), xt, tt).Mean;
        // DDPM eq. 11, computed independently: (x_t − β_t/√(1 − ᾱ_t) ε)/√α_t.
        double beta = Beta(t), abar = AlphaBar(t);
        var eq11 = (xt - beta / Math.Sqrt(1 - abar) * eps) / Math.Sqrt(1 - beta);
        double scale = 1 + eq11.abs().max().item<double>();
        Assert.True((p.Mean - eq11).abs().max().item<double>() <= 1e-6 * scale, "eq. 11 mean differs");
        Assert.True((viaPosterior - eq11).abs().max().item<double>() <= 1e-5 * scale, "posterior mean at x̂0 differs from eq. 11");
        Assert.True((p.PredX0 - Diffusion.PredictX0FromEps(xt, tt, eps)).abs().max().item<double>() == 0);
    }

    [Fact]
    public void Clipped_model_mean_is_the_posterior_mean_at_the_clamped_x0()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(3, new Device("cpu"));
        var xt = 3 * randn(new long[] { 2, 1, 4, 4 }, dtype: float64, generator: g);
        var eps = randn(new long[] { 2, 1, 4, 4 }, dtype: float64, generator: g);
        var tt = full(2, 400L, dtype: int64);
        var p = Diffusion.PMeanVarianceFromEps(xt, tt, eps, clipX0: true);
        var x0 = Diffusion.PredictX0FromEps(xt, tt, eps);
        Assert.True(x0.abs().max().item<double>() > 1, "test input should need clipping");
        Assert.True(p.PredX0.abs().max().item<double>() <= 1);
        var expected = Diffusion.QPosteriorMeanVariance(x0.clamp(-1, 1), xt, tt).Mean;
        Assert.True((p.Mean - expected).abs().max().item<double>() <= 1e-12);
    }

    [Fact]
    public void Reverse_variance_is_beta_tilde_or_beta_and_beta_at_t0_uses_beta_tilde_1()
    {
        using var scope = NewDisposeScope();
        var xt = zeros(new long[] { 3, 1, 1, 1 }, dtype: float64);
        var tt = tensor(new long[] { 0, 1, 700 });
        var tilde = D(Diffusion.PMeanVarianceFromEps(xt, tt, xt, VarianceKind.BetaTilde).Variance.flatten());
        var beta = D(Diffusion.PMeanVarianceFromEps(xt, tt, xt, VarianceKind.Beta).Variance.flatten());
        double BetaTilde(int t) => Beta(t) * (1 - AlphaBar(t - 1)) / (1 - AlphaBar(t));
        Assert.Equal(0.0, tilde[0]);
        Assert.Equal(BetaTilde(1), tilde[1], 1e-6 * BetaTilde(1));
        Assert.Equal(BetaTilde(700), tilde[2], 1e-6 * BetaTilde(700));
        Assert.Equal(BetaTilde(1), beta[0], 1e-6 * BetaTilde(1));
        Assert.Equal(Beta(1), beta[1], 1e-6 * Beta(1));
        Assert.Equal(Beta(700), beta[2], 1e-6 * Beta(700));
    }

    [Fact]
    public void Training_loss_is_the_mse_between_the_noise_and_the_model_output()
    {
        using var scope = NewDisposeScope();
        var x0 = zeros(new long[] { 64, 1, 8, 8 });
        using var g = new Generator(9, new Device("cpu"));
        // A model predicting zero has loss E[ε²] ≈ 1; one that predicts ε exactly (here: x_t/√(1−ᾱ) at x0 = 0) has loss
        // ≈ 0.
        float zeroLoss = Diffusion.TrainingLoss((xt, t) => zeros_like(xt), x0, g).item<float>();
        Assert.InRange(zeroLoss, 1 - 5 * Math.Sqrt(2.0 / 4096), 1 + 5 * Math.Sqrt(2.0 / 4096));
        var sq = tensor(Schedule.AlphasCumprod.Select(a => (float)Math.Sqrt(1 - a)).ToArray());
        float oracleLoss = Diffusion.TrainingLoss((xt, t) => xt / sq.index_select(0, t).reshape(-1, 1, 1, 1), x0, g).item<float>();
        Assert.InRange(oracleLoss, 0f, 1e-10f);
    }
}
