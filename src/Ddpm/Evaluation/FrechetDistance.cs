using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>
/// The Fréchet (2-Wasserstein) distance between Gaussians (Dowson &amp; Landau 1982; the formula of FID, Heusel et al.
/// 2017): d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2}, in float64, with every square root taken
/// by a symmetric eigendecomposition (torch.linalg.eigh) of a positive semi-definite matrix, negative round-off
/// eigenvalues set to 0. Here the features are the MNIST classifier's, so the number is NOT Inception-FID and not
/// comparable to published FIDs.
/// </summary>
public static class FrechetDistance
{
    /// <summary>d² between N(μ₁, Σ₁) and N(μ₂, Σ₂) as above (the squared distance, as FID reports it).</summary>
    public static double Compute(FeatureStatistics a, FeatureStatistics b) => Compute(a.Mean, a.Covariance, b.Mean, b.Covariance);

    /// <inheritdoc cref="Compute(FeatureStatistics, FeatureStatistics)"/>
    public static double Compute(Tensor mean1, Tensor cov1, Tensor mean2, Tensor cov2)
    {
        if (!mean1.shape.SequenceEqual(mean2.shape) || !cov1.shape.SequenceEqual(cov2.shape))
            throw new ArgumentException("both Gaussians must have the same dimension");
        using var scope = NewDisposeScope();
        var m1 = mean1.to(float64).cpu();
        var m2 = mean2.to(float64).cpu();
        var s1 = cov1.to(float64).cpu();
        var s2 = cov2.to(float64).cpu();
        double meanTerm = (m1 - m2).square().sum().item<double>();
        double traces = s1.trace().item<double>() + s2.trace().item<double>();
        double d2 = meanTerm + traces - 2 * TraceSqrtProduct(s1, s2);
        // Round-off can leave −1e−12 for identical sets; the distance itself is never negative.
        return Math.Max(d2, 0.0);
    }

    /// <summary>tr (Σ₁^{1/2} Σ₂ Σ₁^{1/2})^{1/2} = Σᵢ √λᵢ, λᵢ the eigenvalues of the PSD matrix Σ₁^{1/2} Σ₂ Σ₁^{1/2} (=
    /// those of Σ₁Σ₂).</summary>
    public static double TraceSqrtProduct(Tensor cov1, Tensor cov2)
    {
        using var scope = NewDisposeScope();
        var r = SqrtPsd(cov1);
        var m = r.matmul(cov2.to(float64)).matmul(r);
        var (eigenvalues, _) = linalg.eigh((m + m.t()) * 0.5);
        return eigenvalues.clamp_min(0).sqrt().sum().item<double>();
    }

    /// <summary>
    /// The symmetric PSD square root A^{1/2} = Q diag(√max(λ, 0)) Qᵀ of a symmetric PSD matrix A = Q diag(λ) Qᵀ
    /// (eigh of (A + Aᵀ)/2, float64).
    /// </summary>
    public static Tensor SqrtPsd(Tensor a)
    {
        if (a.dim() != 2 || a.shape[0] != a.shape[1]) throw new ArgumentException($"expected a square matrix, got [{string.Join(", ", a.shape)}]");
        using var scope = NewDisposeScope();
        var s = a.to(float64);
        var (eigenvalues, q) = linalg.eigh((s + s.t()) * 0.5);
        return (q * eigenvalues.clamp_min(0).sqrt().unsqueeze(0)).matmul(q.t()).MoveToOuterDisposeScope();
    }
}
