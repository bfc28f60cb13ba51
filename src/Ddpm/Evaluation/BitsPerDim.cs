namespace Ddpm.Evaluation;

/// <summary>
/// The variational bound −log p(x_0) ≤ L = L_T + Σ_{t≥2} L_{t−1} + L_0 (Ho et al. 2020, eq. 5) averaged over
/// <see cref="Images"/> images, in bits per dimension (nats / (D ln 2), D = C·H·W). <see cref="Prior"/> = L_T,
/// <see cref="Kl"/> = Σ L_{t−1} (exact, or the unbiased subset estimate), <see cref="Decoder"/> = L_0.
/// <see cref="ImageStdErr"/>: standard deviation of the per-image totals / √N (uncertainty over the data).
/// <see cref="TimestepStdErr"/>: for <see cref="NllMethod.Estimate"/>, the standard error of the timestep subsampling
/// alone (how far the estimate may lie from the exact sum on the same images and noise); 0 for the exact sum.
/// </summary>
public sealed record BitsPerDim
{
    public NllMethod Method { get; init; }
    public long Images { get; init; }
    /// <summary>T, the number of diffusion steps.</summary>
    public int Timesteps { get; init; }
    /// <summary>KL terms evaluated per image: T − 1 (exact) or K (estimate).</summary>
    public int KlTermsEvaluated { get; init; }
    public double Total { get; init; }
    public double Prior { get; init; }
    public double Kl { get; init; }
    public double Decoder { get; init; }
    public double ImageStdErr { get; init; }
    public double TimestepStdErr { get; init; }
    /// <summary>Exact only: the mean of each term in bits/dim by 0-based timestep t (index 0 = L_0, index t ≥ 1 =
    /// L_{t−1} of the paper's 1-based t + 1); null for estimates.</summary>
    public double[]? TermsByTimestep { get; init; }
    public long Seed { get; init; }
}
