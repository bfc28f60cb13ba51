using Ddpm.Configuration;

namespace Ddpm.Diffusion;

/// <summary>
/// The variance schedule β_1..β_T and every coefficient derived from it, in float64 (seed: "前向过程", the closed
/// form q(x_t|x_0) and the posterior q(x_{t-1}|x_t,x_0)). Index i holds timestep t = i (0-based, as the reference:
/// t ∈ {0..T−1}). Immutable and model-free; <see cref="GaussianDiffusion"/> turns it into tensors.
/// </summary>
public sealed class NoiseSchedule
{
    /// <summary>β_t.</summary>
    public double[] Betas { get; }
    /// <summary>α_t = 1 − β_t.</summary>
    public double[] Alphas { get; }
    /// <summary>ᾱ_t = ∏_{i≤t} α_i.</summary>
    public double[] AlphasCumprod { get; }
    /// <summary>ᾱ_{t−1}, with ᾱ_{−1} = 1.</summary>
    public double[] AlphasCumprodPrev { get; }
    /// <summary>β̃_t = (1 − ᾱ_{t−1}) / (1 − ᾱ_t) · β_t, the variance of q(x_{t−1}|x_t,x_0) (0 at t = 0).</summary>
    public double[] PosteriorVariance { get; }
    /// <summary>log β̃_t with the t = 0 entry replaced by log β̃_1 (β̃_0 = 0), as improved-diffusion does.</summary>
    public double[] PosteriorLogVarianceClipped { get; }
    /// <summary>Coefficient of x_0 in μ̃_t: √ᾱ_{t−1} β_t / (1 − ᾱ_t).</summary>
    public double[] PosteriorMeanCoef1 { get; }
    /// <summary>Coefficient of x_t in μ̃_t: √α_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t).</summary>
    public double[] PosteriorMeanCoef2 { get; }

    public int T => Betas.Length;

    public NoiseSchedule(double[] betas)
    {
        if (betas.Length == 0) throw new ArgumentException("a schedule needs at least one timestep", nameof(betas));
        foreach (var b in betas)
            if (!(b > 0 && b < 1)) throw new ArgumentOutOfRangeException(nameof(betas), $"every β must lie in (0, 1), got {b}");
        int n = betas.Length;
        Betas = (double[])betas.Clone();
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

    /// <summary>β_t = β_start + (β_end − β_start)·t/(T−1): the seed's linear schedule (torch.linspace).</summary>
    public static NoiseSchedule Linear(int numTimesteps, double betaStart = 1e-4, double betaEnd = 0.02)
    {
        if (numTimesteps < 1) throw new ArgumentOutOfRangeException(nameof(numTimesteps), "T must be positive");
        var betas = new double[numTimesteps];
        for (int t = 0; t < numTimesteps; t++)
            betas[t] = numTimesteps == 1 ? betaStart : betaStart + (betaEnd - betaStart) * t / (numTimesteps - 1);
        return new NoiseSchedule(betas);
    }

    /// <summary>
    /// Nichol &amp; Dhariwal 2021, eq. 17: ᾱ(t) = f(t)/f(0), f(t) = cos²(((t/T)+s)/(1+s)·π/2);
    /// β_t = 1 − ᾱ(t+1)/ᾱ(t), clipped at 0.999.
    /// </summary>
    public static NoiseSchedule Cosine(int numTimesteps, double s = 0.008, double maxBeta = 0.999)
    {
        if (numTimesteps < 1) throw new ArgumentOutOfRangeException(nameof(numTimesteps), "T must be positive");
        double F(double t) => Math.Pow(Math.Cos((t / numTimesteps + s) / (1 + s) * Math.PI / 2), 2);
        var betas = new double[numTimesteps];
        for (int t = 0; t < numTimesteps; t++)
            betas[t] = Math.Min(1 - F(t + 1) / F(t), maxBeta);
        return new NoiseSchedule(betas);
    }

    /// <summary>The schedule a <c>diffusion_params</c> section describes.</summary>
    public static NoiseSchedule FromOptions(DiffusionOptions options) => options.Schedule switch
    {
        ScheduleKind.Linear => Linear(options.NumTimesteps, options.BetaStart, options.BetaEnd),
        ScheduleKind.Cosine => Cosine(options.NumTimesteps),
        _ => throw new ArgumentOutOfRangeException(nameof(options)),
    };
}
