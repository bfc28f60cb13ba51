using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>
/// The DDPM decoder p_θ(x_0 | x_1) (Ho et al. 2020, eq. 13): each of the D coordinates of x_0, one of the 256 levels
/// k/127.5 − 1 on [−1, 1], gets the mass of N(μ, σ²) over its bin [x − 1/255, x + 1/255], the outer bins extended to ±∞
/// (δ₋(−1) = −∞, δ₊(1) = +∞), so the 256 probabilities sum to 1. Unlike improved-diffusion's
/// discretized_gaussian_log_likelihood (tanh approximation of Φ, differences of CDFs), Φ is taken from erfc in float64
/// and each bin's mass is the difference of the two tail areas on the far side of the mean, which never cancels
/// catastrophically.
/// </summary>
public static class DiscretizedGaussian
{
    /// <summary>Half the bin width: the 256 levels are 2/255 apart.</summary>
    public const double HalfBin = 1.0 / 255.0;

    /// <summary>Masses below this are floored before the log (ln 1e−300 ≈ −690.8 nats), so a hopeless prediction stays
    /// finite.</summary>
    public const double MinProbability = 1e-300;

    /// <summary>
    /// ln p(x) elementwise, float64: x on the 256-level grid in [−1, 1], <paramref name="means"/> μ and
    /// <paramref name="logScales"/> ln σ broadcastable to x.
    /// </summary>
    public static Tensor LogLikelihood(Tensor x, Tensor means, Tensor logScales)
    {
        using var scope = NewDisposeScope();
        var xd = x.to(float64);
        var invStd = (-logScales.to(float64)).exp();
        var centered = xd - means.to(float64);
        var lo = (centered - HalfBin) * invStd; // standardized lower bin edge
        var hi = (centered + HalfBin) * invStd; // standardized upper bin edge
        // Φ(z) = ½ erfc(−z/√2); the upper tail 1 − Φ(z) = Φ(−z) = ½ erfc(z/√2).
        var cdfHi = Cdf(hi);
        var sfLo = Cdf(-lo);
        // Bins right of the mean: P = Φ(−lo) − Φ(−hi); otherwise P = Φ(hi) − Φ(lo). Both subtract the smaller tail from
        // the larger.
        var mid = where(lo.ge(0), sfLo - Cdf(-hi), cdfHi - Cdf(lo));
        var p = where(xd.lt(-1 + HalfBin), cdfHi, where(xd.gt(1 - HalfBin), sfLo, mid));
        return p.clamp_min(MinProbability).log().MoveToOuterDisposeScope();
    }

    /// <summary>Φ(z) = ½ erfc(−z/√2), the standard normal CDF, accurate in both tails.</summary>
    public static Tensor Cdf(Tensor z) => z.neg().mul(1 / Math.Sqrt(2)).erfc().mul(0.5);
}
