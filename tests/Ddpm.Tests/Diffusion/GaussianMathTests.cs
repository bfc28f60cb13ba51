using Ddpm.Diffusion;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Diffusion;

public class GaussianMathTests
{
    /// <summary>E_p[log p(x) − log q(x)] by Monte Carlo with its standard error.</summary>
    private static (double Estimate, double StdError) MonteCarloKl(double m1, double v1, double m2, double v2, int n, ulong seed)
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(seed, new Device("cpu"));
        var x = m1 + Math.Sqrt(v1) * randn(n, dtype: float64, generator: g);
        Tensor LogPdf(double m, double v) => -0.5 * Math.Log(2 * Math.PI * v) - (x - m).square() / (2 * v);
        var diff = LogPdf(m1, v1) - LogPdf(m2, v2);
        return (diff.mean().item<double>(), diff.std().item<double>() / Math.Sqrt(n));
    }

    public static TheoryData<double, double, double, double> Pairs => new()
    {
        { 0.0, 1.0, 0.0, 1.0 + 1e-9 },
        { 0.0, 1.0, 1.0, 1.0 },
        { 0.5, 0.2, -0.3, 0.7 },
        { -1.0, 2.0, 0.4, 0.5 },
        { 0.1, 0.01, 0.12, 0.02 },
    };

    [Theory]
    [MemberData(nameof(Pairs))]
    public void Scalar_kl_matches_a_monte_carlo_estimate(double m1, double v1, double m2, double v2)
    {
        var kl = GaussianMath.NormalKl(m1, v1, m2, v2);
        var (mc, se) = MonteCarloKl(m1, v1, m2, v2, 400_000, 42);
        Assert.InRange(kl, mc - 5 * se - 1e-12, mc + 5 * se + 1e-12);
    }

    [Fact]
    public void Tensor_kl_matches_a_monte_carlo_estimate_elementwise()
    {
        using var scope = NewDisposeScope();
        double[] m1 = [0.0, 0.5, -1.0, 0.1], v1 = [1.0, 0.2, 2.0, 0.01], m2 = [1.0, -0.3, 0.4, 0.12], v2 = [1.0, 0.7, 0.5, 0.02];
        var kl = GaussianMath.NormalKl(tensor(m1), tensor(v1.Select(v => Math.Log(v)).ToArray()), tensor(m2), tensor(v2.Select(v => Math.Log(v)).ToArray()));
        var values = kl.data<double>().ToArray();
        for (int i = 0; i < m1.Length; i++)
        {
            var (mc, se) = MonteCarloKl(m1[i], v1[i], m2[i], v2[i], 400_000, (ulong)(100 + i));
            Assert.InRange(values[i], mc - 5 * se, mc + 5 * se);
        }
    }

    [Fact]
    public void Both_kl_overloads_agree_and_are_non_negative()
    {
        using var scope = NewDisposeScope();
        using var g = new Generator(3, new Device("cpu"));
        var m1 = randn(200, dtype: float64, generator: g);
        var m2 = randn(200, dtype: float64, generator: g);
        var lv1 = randn(200, dtype: float64, generator: g);
        var lv2 = randn(200, dtype: float64, generator: g);
        var kl = GaussianMath.NormalKl(m1, lv1, m2, lv2).data<double>().ToArray();
        double[] a = m1.data<double>().ToArray(), b = lv1.data<double>().ToArray(), c = m2.data<double>().ToArray(), d = lv2.data<double>().ToArray();
        for (int i = 0; i < 200; i++)
        {
            Assert.True(kl[i] >= 0, $"KL {kl[i]} < 0");
            var scalar = GaussianMath.NormalKl(a[i], Math.Exp(b[i]), c[i], Math.Exp(d[i]));
            Assert.True(Math.Abs(kl[i] - scalar) <= 1e-10 * (1 + scalar), $"tensor {kl[i]} vs scalar {scalar}");
        }
    }

    [Fact]
    public void Kl_of_a_distribution_with_itself_is_zero()
    {
        using var scope = NewDisposeScope();
        Assert.Equal(0.0, GaussianMath.NormalKl(0.3, 0.7, 0.3, 0.7), 15);
        Assert.Equal(0.0, GaussianMath.NormalKl(-2.0, 1e-4, -2.0, 1e-4), 15);
        var m = tensor(new[] { 0.3, -2.0 });
        var lv = tensor(new[] { Math.Log(0.7), Math.Log(1e-4) });
        Assert.All(GaussianMath.NormalKl(m, lv, m, lv).data<double>().ToArray(), v => Assert.Equal(0.0, v, 15));
        // And it is positive as soon as the means or variances differ.
        Assert.True(GaussianMath.NormalKl(0.3, 0.7, 0.31, 0.7) > 0);
        Assert.True(GaussianMath.NormalKl(0.3, 0.7, 0.3, 0.71) > 0);
    }
}
