namespace Ddpm.Onnx.Sampling;

/// <summary>
/// DDIM (Song et al. 2021, eq. 12) over S ≤ T timesteps: x_{τ−} = √ᾱ_{τ−} x̂_0 + √(1 − ᾱ_{τ−} − σ²) ε + σ z with
/// σ = η √((1 − ᾱ_{τ−})/(1 − ᾱ_τ)) √(1 − ᾱ_τ/ᾱ_{τ−}); after the last step ᾱ = 1 (x̂_0).
/// </summary>
public sealed class DdimSampler : ISpanSampler
{
    private readonly DiffusionSchedule _schedule;
    private readonly double _eta;
    private readonly bool _clipX0;

    public IReadOnlyList<int> Timesteps { get; }

    public DdimSampler(DiffusionSchedule schedule, int steps, double eta = 0, SpacingKind spacing = SpacingKind.Uniform, bool clipX0 = false)
    {
        if (!(eta >= 0 && eta <= 1)) throw new ArgumentOutOfRangeException(nameof(eta), $"η must lie in [0, 1], got {eta}");
        _schedule = schedule;
        _eta = eta;
        _clipX0 = clipX0;
        Timesteps = TimestepSpacing.Ascending(schedule, steps, spacing).Reverse().ToArray();
    }

    private (double A, double APrev) Alphas(int index) =>
        (_schedule.AlphasCumprod[Timesteps[index]], index + 1 < Timesteps.Count ? _schedule.AlphasCumprod[Timesteps[index + 1]] : 1.0);

    /// <summary>σ of the step from Timesteps[index] (0 for the last).</summary>
    public double Sigma(int index)
    {
        var (a, aPrev) = Alphas(index);
        return _eta * Math.Sqrt((1 - aPrev) / (1 - a)) * Math.Sqrt(1 - a / aPrev);
    }

    public bool UsesNoise(int index) => Sigma(index) > 0;

    public void Step(ReadOnlySpan<float> eps, int index, ReadOnlySpan<float> x, ReadOnlySpan<float> noise, Span<float> next)
    {
        SpanChecks.SameLength(eps, x, next);
        var (a, aPrev) = Alphas(index);
        double sigma = Sigma(index);
        if (sigma > 0) SpanChecks.Noise(noise, x.Length, index);
        float sqrtOneMinusA = (float)Math.Sqrt(1 - a), sqrtA = (float)Math.Sqrt(a), sqrtAPrev = (float)Math.Sqrt(aPrev);
        float dir = (float)Math.Sqrt(Math.Max(1 - aPrev - sigma * sigma, 0)), s = (float)sigma;
        for (int i = 0; i < x.Length; i++)
        {
            float e = eps[i];
            float x0 = (x[i] - sqrtOneMinusA * e) / sqrtA;
            if (_clipX0)
            {
                x0 = Math.Clamp(x0, -1f, 1f);
                e = (x[i] - sqrtA * x0) / sqrtOneMinusA;
            }
            float v = sqrtAPrev * x0 + dir * e;
            next[i] = sigma > 0 ? v + s * noise[i] : v;
        }
    }
}
