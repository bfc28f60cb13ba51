namespace Ddpm.Onnx;

/// <summary>
/// The variance schedule β_t and the coefficients the samplers use, in float64, index i = timestep t (0-based): the
/// same definitions as the TorchSharp library's NoiseSchedule (Ho et al. 2020, eq. 4, 6, 7).
/// </summary>
public sealed class DiffusionSchedule
{
    public double[] Betas { get; }
    /// <summary>α_t = 1 − β_t.</summary>
    public double[] Alphas { get; }
    /// <summary>ᾱ_t = ∏_{i≤t} α_i.</summary>
    public double[] AlphasCumprod { get; }
    /// <summary>ᾱ_{t−1}, with ᾱ_{−1} = 1.</summary>
    public double[] AlphasCumprodPrev { get; }
    /// <summary>β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t)·β_t.</summary>
    public double[] PosteriorVariance { get; }
    /// <summary>log β̃_t with t = 0 replaced by log β̃_1 (β̃_0 = 0), as improved-diffusion does.</summary>
    public double[] PosteriorLogVarianceClipped { get; }
    /// <summary>Coefficient of x_0 in μ̃_t: √ᾱ_{t−1} β_t/(1 − ᾱ_t).</summary>
    public double[] PosteriorMeanCoef1 { get; }
    /// <summary>Coefficient of x_t in μ̃_t: √α_t (1 − ᾱ_{t−1})/(1 − ᾱ_t).</summary>
    public double[] PosteriorMeanCoef2 { get; }

    public int T => Betas.Length;

    public DiffusionSchedule(IReadOnlyList<double> betas)
    {
        if (betas.Count == 0) throw new ArgumentException("a schedule needs at least one timestep", nameof(betas));
        int n = betas.Count;
        Betas = betas.ToArray();
        foreach (var b in Betas)
            if (!(b > 0 && b < 1)) throw new ArgumentOutOfRangeException(nameof(betas), $"every β must lie in (0, 1), got {b}");
        Alphas = new double[n];
        AlphasCumprod = new double[n];
        AlphasCumprodPrev = new double[n];
        PosteriorVariance = new double[n];
        PosteriorLogVarianceClipped = new double[n];
        PosteriorMeanCoef1 = new double[n];
        PosteriorMeanCoef2 = new double[n];
        double cumprod = 1.0;
        for (int t = 0; t < n; t++)
        {
            Alphas[t] = 1.0 - Betas[t];
            AlphasCumprodPrev[t] = cumprod;
            cumprod *= Alphas[t];
            AlphasCumprod[t] = cumprod;
            PosteriorVariance[t] = Betas[t] * (1.0 - AlphasCumprodPrev[t]) / (1.0 - AlphasCumprod[t]);
            PosteriorMeanCoef1[t] = Betas[t] * Math.Sqrt(AlphasCumprodPrev[t]) / (1.0 - AlphasCumprod[t]);
            PosteriorMeanCoef2[t] = (1.0 - AlphasCumprodPrev[t]) * Math.Sqrt(Alphas[t]) / (1.0 - AlphasCumprod[t]);
        }
        for (int t = 0; t < n; t++)
            PosteriorLogVarianceClipped[t] = Math.Log(t == 0 && n > 1 ? PosteriorVariance[1] : Math.Max(PosteriorVariance[t], 1e-20));
    }

    /// <summary>λ_t = ½·log(ᾱ_t/(1 − ᾱ_t)), the log signal-to-noise ratio (Lu et al. 2022, DPM-Solver eq. 3.1);
    /// decreasing in t.</summary>
    public double[] LogSnr() => AlphasCumprod.Select(a => 0.5 * (Math.Log(a) - Math.Log(1 - a))).ToArray();
}
