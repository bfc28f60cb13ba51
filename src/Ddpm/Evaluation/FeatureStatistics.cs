using Ddpm.Data;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>
/// The Gaussian N(μ, Σ) fitted to N feature vectors: μ = (1/N) Σ φ_i, Σ = (1/(N−1)) Σ (φ_i − μ)(φ_i − μ)ᵀ, float64 on
/// the CPU.
/// </summary>
public sealed class FeatureStatistics : IDisposable
{
    /// <summary>μ, float64 [D].</summary>
    public Tensor Mean { get; }
    /// <summary>Σ, float64 [D, D], symmetric.</summary>
    public Tensor Covariance { get; }
    /// <summary>N, the number of feature vectors.</summary>
    public long Count { get; }
    public long Dim => Mean.shape[0];

    public FeatureStatistics(Tensor mean, Tensor covariance, long count)
    {
        if (mean.dim() != 1 || covariance.dim() != 2 || covariance.shape[0] != mean.shape[0] || covariance.shape[1] != mean.shape[0])
            throw new ArgumentException($"mean must be [D] and covariance [D, D], got [{string.Join(", ", mean.shape)}] and [{string.Join(", ", covariance.shape)}]");
        Mean = mean.to(float64).cpu().DetachFromDisposeScope();
        Covariance = covariance.to(float64).cpu().DetachFromDisposeScope();
        Count = count;
    }

    /// <summary>
    /// Fits μ and Σ to <paramref name="features"/> [N, D]. With N ≤ D the sample covariance has rank ≤ N − 1 &lt; D
    /// (singular, and the Fréchet distance meaningless), so this throws a <see cref="DataException"/> naming
    /// <paramref name="source"/> and asking for more samples.
    /// </summary>
    public static FeatureStatistics FromFeatures(Tensor features, string source)
    {
        if (features.dim() != 2) throw new ArgumentException($"features must be [N, D], got [{string.Join(", ", features.shape)}]");
        long n = features.shape[0], d = features.shape[1];
        if (n <= d)
            throw new DataException(source, $"{n} samples are too few for {d}-dimensional features: their covariance would be singular " +
                $"(rank ≤ N − 1). Use at least {d + 1} samples ({Math.Max(1000, 10 * d)} or more recommended).");
        using var scope = NewDisposeScope();
        var f = features.to(float64).cpu();
        var mean = f.mean([0]);
        var centered = f - mean;
        var cov = centered.t().matmul(centered) / (n - 1);
        return new FeatureStatistics(mean, (cov + cov.t()) * 0.5, n);
    }

    public void Dispose()
    {
        Mean.Dispose();
        Covariance.Dispose();
    }
}
