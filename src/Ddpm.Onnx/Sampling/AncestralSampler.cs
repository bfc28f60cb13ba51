namespace Ddpm.Onnx.Sampling;

/// <summary>σ_t² of the ancestral step.</summary>
public enum VarianceKind
{
    /// <summary>β̃_t, the posterior variance (the default).</summary>
    BetaTilde,
    /// <summary>β_t (at t = 0, β̃_1).</summary>
    Beta,
}

/// <summary>
/// Ancestral sampling, Algorithm 2 of Ho et al. 2020: x_{t−1} = μ_θ(x_t, t) + σ_t z with no noise at the last step,
/// over all T timesteps, or over a sub-sequence with the β's recomputed for it (improved-diffusion's respacing: β'_i =
/// 1 − ᾱ_{τ_i}/ᾱ_{τ_{i−1}}), the model still called at the original τ_i. The coefficients are float32 as in the
/// TorchSharp sampler, so both compute the same float32 arithmetic.
/// </summary>
public sealed class AncestralSampler : ISpanSampler
{
    private readonly float[] _sqrtRecipAlphas, _epsCoef, _sqrtRecipAc, _sqrtRecipM1Ac, _coef1, _coef2, _halfLogVar;
    private readonly bool _clipX0;

    public IReadOnlyList<int> Timesteps { get; }

    public AncestralSampler(DiffusionSchedule schedule, int steps, SpacingKind spacing = SpacingKind.Uniform,
        VarianceKind variance = VarianceKind.BetaTilde, bool clipX0 = false)
    {
        var ascending = TimestepSpacing.Ascending(schedule, steps, spacing);
        var chain = schedule;
        if (steps != schedule.T || spacing != SpacingKind.Uniform) // as the TorchSharp library: respaced unless all T, uniform
        {
            var betas = new double[ascending.Length];
            double previous = 1.0;
            for (int i = 0; i < ascending.Length; i++)
            {
                double a = schedule.AlphasCumprod[ascending[i]];
                betas[i] = Math.Min(1 - a / previous, 0.999);
                previous = a;
            }
            chain = new DiffusionSchedule(betas);
        }
        Timesteps = ascending.Reverse().ToArray();
        _clipX0 = clipX0;
        int n = chain.T;
        _sqrtRecipAlphas = new float[n];
        _epsCoef = new float[n];
        _sqrtRecipAc = new float[n];
        _sqrtRecipM1Ac = new float[n];
        _coef1 = new float[n];
        _coef2 = new float[n];
        _halfLogVar = new float[n];
        for (int t = 0; t < n; t++)
        {
            double ac = chain.AlphasCumprod[t];
            _sqrtRecipAlphas[t] = (float)(1 / Math.Sqrt(chain.Alphas[t]));
            _epsCoef[t] = (float)(chain.Betas[t] / Math.Sqrt(1 - ac));
            _sqrtRecipAc[t] = (float)(1 / Math.Sqrt(ac));
            _sqrtRecipM1Ac[t] = (float)Math.Sqrt(1 / ac - 1);
            _coef1[t] = (float)chain.PosteriorMeanCoef1[t];
            _coef2[t] = (float)chain.PosteriorMeanCoef2[t];
            double logVar = variance == VarianceKind.BetaTilde
                ? chain.PosteriorLogVarianceClipped[t]
                : Math.Log(t == 0 && n > 1 ? chain.PosteriorVariance[1] : chain.Betas[t]);
            _halfLogVar[t] = 0.5f * (float)logVar;
        }
    }

    /// <summary>Every step but the last adds σ_t z.</summary>
    public bool UsesNoise(int index) => index < Timesteps.Count - 1;

    public void Step(ReadOnlySpan<float> eps, int index, ReadOnlySpan<float> x, ReadOnlySpan<float> noise, Span<float> next)
    {
        int t = Timesteps.Count - 1 - index; // the chain's own timestep (the respaced index when respaced)
        SpanChecks.SameLength(eps, x, next);
        if (_clipX0)
        {
            // μ̃_t(clamp(x̂_0, −1, 1), x_t) (DDPM eq. 7) with x̂_0 = x_t/√ᾱ_t − √(1/ᾱ_t − 1) ε.
            float r = _sqrtRecipAc[t], m = _sqrtRecipM1Ac[t], c1 = _coef1[t], c2 = _coef2[t];
            for (int i = 0; i < x.Length; i++)
            {
                float x0 = Math.Clamp(r * x[i] - m * eps[i], -1f, 1f);
                next[i] = c1 * x0 + c2 * x[i];
            }
        }
        else
        {
            // μ_θ = (x_t − β_t/√(1 − ᾱ_t) ε)/√α_t (DDPM eq. 11).
            float s = _sqrtRecipAlphas[t], e = _epsCoef[t];
            for (int i = 0; i < x.Length; i++) next[i] = s * (x[i] - e * eps[i]);
        }
        if (!UsesNoise(index)) return;
        SpanChecks.Noise(noise, x.Length, index);
        float sigma = MathF.Exp(_halfLogVar[t]);
        for (int i = 0; i < x.Length; i++) next[i] += sigma * noise[i];
    }
}
