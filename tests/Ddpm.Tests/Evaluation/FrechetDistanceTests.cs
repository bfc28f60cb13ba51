using Ddpm.Data;
using Ddpm.Evaluation;
using Xunit;
using static TorchSharp.torch;

namespace Ddpm.Tests.Evaluation;

public sealed class FrechetDistanceTests
{
    private static Tensor M(double[,] values) => tensor(values, dtype: float64);

    private static Tensor Features(long n, long d, ulong seed, double shift = 0)
    {
        using var g = new Generator(seed, new Device("cpu"));
        using var mix = randn([d, d], dtype: float64, generator: g);
        return randn([n, d], dtype: float64, generator: g).matmul(mix) + shift;
    }

    [Fact]
    public void The_square_root_of_a_diagonal_matrix_is_the_root_of_its_entries()
    {
        using var root = FrechetDistance.SqrtPsd(M(new double[,] { { 4, 0, 0 }, { 0, 9, 0 }, { 0, 0, 0 } }));
        using var expected = M(new double[,] { { 2, 0, 0 }, { 0, 3, 0 }, { 0, 0, 0 } });
        Assert.True(root.allclose(expected, rtol: 0, atol: 1e-12), root.ToString(TorchSharp.TensorStringStyle.Julia));
    }

    [Fact]
    public void The_square_root_of_a_rotated_matrix_squares_back_to_it_and_is_symmetric()
    {
        double c = Math.Cos(0.3), s = Math.Sin(0.3);
        using var q = M(new double[,] { { c, -s }, { s, c } });
        using var a = q.matmul(M(new double[,] { { 4, 0 }, { 0, 9 } })).matmul(q.t());
        using var root = FrechetDistance.SqrtPsd(a);
        using var expected = q.matmul(M(new double[,] { { 2, 0 }, { 0, 3 } })).matmul(q.t());
        Assert.True(root.allclose(expected, rtol: 0, atol: 1e-12));
        Assert.True(root.matmul(root).allclose(a, rtol: 0, atol: 1e-12));
        Assert.True(root.allclose(root.t(), rtol: 0, atol: 1e-14));
    }

    [Fact]
    public void The_square_root_of_a_singular_psd_matrix_is_exact()
    {
        // [[1,1],[1,1]] = 2·vvᵀ with v = (1,1)/√2, so its root is √2·vvᵀ = [[1,1],[1,1]]/√2.
        using var root = FrechetDistance.SqrtPsd(M(new double[,] { { 1, 1 }, { 1, 1 } }));
        using var expected = M(new double[,] { { 1, 1 }, { 1, 1 } }) / Math.Sqrt(2);
        Assert.True(root.allclose(expected, rtol: 0, atol: 1e-12));
    }

    [Fact]
    public void A_set_has_distance_zero_to_itself()
    {
        using var f = Features(500, 8, 1);
        using var a = FeatureStatistics.FromFeatures(f, "a");
        using var b = FeatureStatistics.FromFeatures(f, "b");
        Assert.InRange(FrechetDistance.Compute(a, b), 0, 1e-9);
    }

    [Fact]
    public void The_distance_grows_with_a_shift_of_the_mean_by_the_squared_shift()
    {
        using var f = Features(500, 8, 2);
        using var stats = FeatureStatistics.FromFeatures(f, "f");
        double previous = 0;
        foreach (var shift in new[] { 0.1, 0.5, 1.0, 2.0 })
        {
            using var shifted = f + shift;
            using var s = FeatureStatistics.FromFeatures(shifted, "shifted");
            double d = FrechetDistance.Compute(stats, s);
            Assert.Equal(8 * shift * shift, d, 1e-8); // same covariance: d² = ‖Δμ‖² = D·shift²
            Assert.True(d > previous);
            previous = d;
        }
    }

    [Fact]
    public void The_distance_between_diagonal_gaussians_has_its_closed_form()
    {
        using var m1 = tensor(new[] { 0.0, 1.0, -2.0 }, dtype: float64);
        using var m2 = tensor(new[] { 1.0, 1.0, 0.0 }, dtype: float64);
        using var s1 = diag(tensor(new[] { 1.0, 4.0, 0.25 }, dtype: float64));
        using var s2 = diag(tensor(new[] { 9.0, 1.0, 0.25 }, dtype: float64));
        // ‖Δμ‖² + Σ (√a − √b)² = (1 + 0 + 4) + ((1−3)² + (2−1)² + 0) = 10.
        Assert.Equal(10.0, FrechetDistance.Compute(m1, s1, m2, s2), 1e-10);
    }

    [Fact]
    public void The_distance_between_non_commuting_2x2_covariances_has_its_closed_form()
    {
        // For 2×2 PSD A, B: tr √(AB) = √(tr(AB) + 2√det(AB)), since AB's eigenvalues λ1, λ2 ≥ 0 give (√λ1 + √λ2)².
        using var a = M(new double[,] { { 2, 0.5 }, { 0.5, 1 } });
        using var b = M(new double[,] { { 1, -0.3 }, { -0.3, 3 } });
        using var ab = a.matmul(b);
        double trSqrt = Math.Sqrt(ab.trace().item<double>() + 2 * Math.Sqrt(linalg.det(ab).item<double>()));
        Assert.Equal(trSqrt, FrechetDistance.TraceSqrtProduct(a, b), 1e-10);
        using var zero = zeros(2, dtype: float64);
        double expected = 3 + 4 - 2 * trSqrt;
        Assert.Equal(expected, FrechetDistance.Compute(zero, a, zero, b), 1e-10);
    }

    [Fact]
    public void Fewer_samples_than_feature_dimensions_is_refused_with_a_clear_message()
    {
        using var f = Features(8, 8, 3);
        var e = Assert.Throws<DataException>(() => FeatureStatistics.FromFeatures(f, "generated samples"));
        Assert.Contains("singular", e.Message);
        Assert.Contains("at least 9 samples", e.Message);
    }
}
