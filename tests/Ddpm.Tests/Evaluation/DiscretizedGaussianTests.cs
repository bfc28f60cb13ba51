using Ddpm.Evaluation;
using Xunit;
using static TorchSharp.torch;

namespace Ddpm.Tests.Evaluation;

public sealed class DiscretizedGaussianTests
{
    private static Tensor Levels() => arange(256, dtype: float64) / 127.5 - 1;

    [Theory]
    [InlineData(0.0, -3.0)]
    [InlineData(0.3, -6.0)]      // σ ≈ 0.0025, narrower than a bin
    [InlineData(-0.999, -1.0)]
    [InlineData(2.5, -2.0)]      // mean outside [−1, 1]: the mass sits in the top bin
    [InlineData(-0.7, 1.5)]      // σ ≈ 4.5, far wider than the range
    [InlineData(0.1234, -12.0)]  // σ ≈ 6e−6: one bin takes everything
    public void The_probabilities_of_all_256_bins_sum_to_one(double mean, double logScale)
    {
        using var x = Levels();
        using var logp = DiscretizedGaussian.LogLikelihood(x, full(256, mean, dtype: float64), full(256, logScale, dtype: float64));
        Assert.Equal(1.0, logp.exp().sum().item<double>(), 1e-12);
        Assert.True(logp.le(0).all().item<bool>());
    }

    [Fact]
    public void An_interior_bin_holds_the_gaussian_mass_between_its_edges_and_the_edge_bins_hold_the_tails()
    {
        double mu = 0.1, sigma = 0.05;
        using var x = tensor(new[] { 2 * 140 / 255.0 - 1, -1.0, 1.0 }, dtype: float64);
        using var logp = DiscretizedGaussian.LogLikelihood(x, full(3, mu, dtype: float64), full(3, Math.Log(sigma), dtype: float64));
        var got = logp.exp().data<double>().ToArray();
        double Phi(double z) => special.ndtr(tensor(z, dtype: float64)).item<double>();
        double xi = 2 * 140 / 255.0 - 1;
        Assert.Equal(Phi((xi + 1 / 255.0 - mu) / sigma) - Phi((xi - 1 / 255.0 - mu) / sigma), got[0], 1e-14);
        Assert.Equal(Phi((-1 + 1 / 255.0 - mu) / sigma), got[1], 1e-14);
        Assert.Equal(1 - Phi((1 - 1 / 255.0 - mu) / sigma), got[2], 1e-14);
    }

    [Fact]
    public void Far_tail_bins_keep_accurate_finite_log_probabilities()
    {
        // 30σ right of the mean: Φ differences of numbers near 1 would give 0 (−∞); tail areas give ≈ −455 nats.
        double sigma = 0.01, mu = 0.0, xi = 2 * 166 / 255.0 - 1; // ≈ 0.302
        using var logp = DiscretizedGaussian.LogLikelihood(tensor(xi, dtype: float64), tensor(mu, dtype: float64), tensor(Math.Log(sigma), dtype: float64));
        double value = logp.item<double>();
        double lo = (xi - 1 / 255.0 - mu) / sigma;
        // Mills ratio bound: the bin mass is below the tail beyond lo, φ(lo)/lo.
        double upper = -0.5 * lo * lo - Math.Log(lo * Math.Sqrt(2 * Math.PI));
        Assert.True(double.IsFinite(value));
        Assert.InRange(value, upper - 5, upper);
    }
}
