using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>What a data-prediction solver does to its estimate x̂_0 before using it.</summary>
public sealed record X0Correction
{
    /// <summary>Clamp x̂_0 to [−1, 1] (the data range).</summary>
    public bool Clip { get; init; }
    /// <summary>
    /// Dynamic thresholding's percentile p ∈ (0, 1) (Saharia et al. 2022, §2.3; Imagen uses 0.995), or null for none.
    /// Applied instead of <see cref="Clip"/> when both are set (it ends in [−1, 1] too).
    /// </summary>
    public double? DynamicThreshold { get; init; }

    /// <summary>No correction.</summary>
    public static readonly X0Correction None = new();

    /// <summary>True when x̂_0 is used as predicted.</summary>
    public bool IsNone => !Clip && DynamicThreshold is null;

    /// <summary>x̂_0 after clipping or dynamic thresholding (a new tensor; the input is left alone).</summary>
    public Tensor Apply(Tensor x0)
    {
        if (DynamicThreshold is { } p) return DataPrediction.DynamicThreshold(x0, p);
        return Clip ? x0.clamp(-1.0, 1.0) : x0.alias();
    }
}

/// <summary>The data prediction x̂_0 that DPM-Solver++ and UniPC step with, from the noise prediction the caller
/// gives.</summary>
public static class DataPrediction
{
    /// <summary>x̂_0 = (x_t − σ_t ε)/α_t with α_t = √ᾱ_t, σ_t = √(1 − ᾱ_t) (Ho et al. 2020, eq. 4 solved for x_0), then
    /// <paramref name="correction"/>.</summary>
    public static Tensor FromEps(Tensor x, Tensor eps, double alpha, double sigma, X0Correction correction)
    {
        using var scope = NewDisposeScope();
        var x0 = (x - sigma * eps) / alpha;
        return (correction.IsNone ? x0 : correction.Apply(x0)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Dynamic thresholding (Saharia et al. 2022, §2.3): per image s = max(1, the p-quantile of |x̂_0|), then
    /// x̂_0 ← clamp(x̂_0, −s, s)/s. Images already inside [−1, 1] (s = 1) are only clipped, so never rescaled.
    /// </summary>
    public static Tensor DynamicThreshold(Tensor x0, double p)
    {
        if (!(p > 0 && p < 1)) throw new ArgumentOutOfRangeException(nameof(p), $"the dynamic-threshold percentile must lie in (0, 1), got {p}");
        using var scope = NewDisposeScope();
        long b = x0.shape[0];
        var flat = x0.reshape(b, -1);
        // quantile needs float32 or float64: a bfloat16 x̂_0 is measured in float32.
        var abs = flat.abs().to(flat.dtype == ScalarType.Float64 ? ScalarType.Float64 : ScalarType.Float32);
        var s = abs.quantile(tensor(p, dtype: abs.dtype), dim: 1, keepdim: true).clamp_min(1.0).to(x0.dtype);
        var result = (flat.clamp(-s, s) / s).reshape(x0.shape);
        return result.MoveToOuterDisposeScope();
    }
}
