namespace Ddpm.Onnx.Sampling;

/// <summary>
/// DPM-Solver++ (Lu et al. 2022, Algorithm 2) in data-prediction form over a λ grid of the visited timesteps, first or
/// second order ("2M"), deterministic (the probability-flow ODE) or stochastic ("2M SDE"): ODE: x_{i+1} = (σ_{i+1}/σ_i)
/// x_i − α_{i+1}(e^{−h} − 1) D; SDE: x_{i+1} = (σ_{i+1}/σ_i) e^{−h} x_i + α_{i+1}(1 − e^{−2h}) D + σ_{i+1} √(1 −
/// e^{−2h}) z, with h = λ_{i+1} − λ_i and D = D_i + ½(D_i − D_{i−1})/r, r = h_{i−1}/h_i (D_i alone on the first step).
/// The last step returns x̂_0. It keeps the previous x̂_0, so one instance samples one batch at a time, steps in order.
/// </summary>
public sealed class DpmSolverSampler : ISpanSampler
{
    private readonly double[] _alpha, _sigma, _lambda;
    private readonly bool _clipX0;
    private float[]? _previous;
    private int _previousIndex = -1, _expected;

    public IReadOnlyList<int> Timesteps { get; }
    public int Order { get; }
    public bool Stochastic { get; }

    public DpmSolverSampler(DiffusionSchedule schedule, int steps, SpacingKind spacing = SpacingKind.Karras, int order = 2,
        bool stochastic = true, bool clipX0 = false)
    {
        if (order is < 1 or > 2) throw new ArgumentOutOfRangeException(nameof(order), $"DPM-Solver++ order must be 1 or 2, got {order}");
        Timesteps = TimestepSpacing.Ascending(schedule, steps, spacing).Reverse().ToArray();
        Order = order;
        Stochastic = stochastic;
        _clipX0 = clipX0;
        int n = Timesteps.Count;
        _alpha = new double[n + 1];
        _sigma = new double[n + 1];
        _lambda = new double[n + 1];
        for (int i = 0; i < n; i++)
        {
            double a = schedule.AlphasCumprod[Timesteps[i]];
            _alpha[i] = Math.Sqrt(a);
            _sigma[i] = Math.Sqrt(1 - a);
            _lambda[i] = 0.5 * (Math.Log(a) - Math.Log(1 - a));
        }
        (_alpha[n], _sigma[n], _lambda[n]) = (1, 0, double.PositiveInfinity);
    }

    private bool IsFinal(int index) => index == Timesteps.Count - 1;

    /// <summary>Only the SDE variant draws noise, and not on its last step.</summary>
    public bool UsesNoise(int index) => Stochastic && !IsFinal(index);

    public void Step(ReadOnlySpan<float> eps, int index, ReadOnlySpan<float> x, ReadOnlySpan<float> noise, Span<float> next)
    {
        SpanChecks.SameLength(eps, x, next);
        if (index == 0) _previousIndex = -1;
        else if (index != _expected)
            throw new InvalidOperationException($"DPM-Solver++ is a multistep solver: its steps must be taken in order 0, 1, 2, … (expected step {_expected}, got {index})");
        _expected = index + 1;
        if (UsesNoise(index)) SpanChecks.Noise(noise, x.Length, index);

        // x̂_0 = (x_t − σ_t ε)/α_t (clipped to [−1, 1] when asked).
        float sigma = (float)_sigma[index], alpha = (float)_alpha[index];
        var d0 = new float[x.Length];
        for (int i = 0; i < x.Length; i++)
        {
            float v = (x[i] - sigma * eps[i]) / alpha;
            d0[i] = _clipX0 ? Math.Clamp(v, -1f, 1f) : v;
        }
        if (IsFinal(index))
        {
            d0.CopyTo(next);
            _previousIndex = -1;
            return;
        }
        bool second = Order == 2 && _previousIndex >= 0;
        if (second && _previous!.Length != x.Length)
            throw new ArgumentException($"step {index} has {x.Length} values, the previous step {_previous.Length}: one batch per run");
        double h = _lambda[index + 1] - _lambda[index];
        double sigmaRatio = _sigma[index + 1] / _sigma[index], alphaNext = _alpha[index + 1];
        float r = second ? (float)((_lambda[index] - _lambda[_previousIndex]) / h) : 1f;
        var d1 = _previous;
        if (Stochastic)
        {
            double decay = -Expm1(-2 * h);
            float cx = (float)(sigmaRatio * Math.Exp(-h)), cd = (float)(alphaNext * decay), cz = (float)(_sigma[index + 1] * Math.Sqrt(decay));
            for (int i = 0; i < x.Length; i++)
            {
                float d = second ? d0[i] + 0.5f * ((d0[i] - d1![i]) / r) : d0[i];
                next[i] = cx * x[i] + cd * d + cz * noise[i];
            }
        }
        else
        {
            float cx = (float)sigmaRatio, cd = (float)(alphaNext * Expm1(-h));
            for (int i = 0; i < x.Length; i++)
            {
                float d = second ? d0[i] + 0.5f * ((d0[i] - d1![i]) / r) : d0[i];
                next[i] = cx * x[i] - cd * d;
            }
        }
        _previous = d0;
        _previousIndex = index;
    }

    /// <summary>e^z − 1 without cancellation for small z: z·φ_1(z), φ_1(z) = Σ_j z^j/(j+1)! for |z| &lt; 1.</summary>
    internal static double Expm1(double z)
    {
        if (Math.Abs(z) >= 1) return Math.Exp(z) - 1;
        double term = 1.0, sum = 0;
        for (int j = 0; j < 40 && term != 0; j++)
        {
            sum += term;
            term *= z / (j + 2);
        }
        return z * sum;
    }
}
