using Ddpm.Diffusion;

namespace Ddpm.Sampling;

/// <summary>How a sampler with S &lt; T steps picks its sub-sequence of the T model timesteps.</summary>
public enum SpacingKind
{
    /// <summary>Evenly spaced from 0 to T−1 (DDIM's "uniform").</summary>
    Uniform,
    /// <summary>Denser near t = 0: round((i·√(0.8T)/(S−1))²) (DDIM's "quadratic", Song et al. 2021 §D.2).</summary>
    Quadratic,
    /// <summary>Evenly spaced in log-SNR λ_t = log(α_t/σ_t) from λ_{T−1} to λ_0 (Lu et al. 2022, DPM-Solver §3.3
    /// "logSNR").</summary>
    Lambda,
    /// <summary>Karras et al. 2022, eq. 5: σ_i = (σ_max^{1/ρ} + i/(S−1)·(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ, ρ = 7, σ =
    /// √((1−ᾱ)/ᾱ).</summary>
    Karras,
}

/// <summary>Timestep sub-sequences τ_1 &lt; … &lt; τ_S of {0..T−1}.</summary>
public static class TimestepSpacing
{
    /// <summary>Karras et al.'s ρ (2022, eq. 5), the value they use for every model.</summary>
    public const double KarrasRho = 7.0;

    /// <summary>
    /// S distinct timesteps in ascending order for the spacings that need only T (uniform, quadratic); always contains
    /// 0 and, for uniform spacing, T−1. Lambda and Karras spacing need the schedule: use the other overload.
    /// </summary>
    public static int[] Ascending(int numTimesteps, int steps, SpacingKind kind = SpacingKind.Uniform)
    {
        CheckSteps(numTimesteps, steps);
        if (kind is SpacingKind.Lambda or SpacingKind.Karras)
            throw new ArgumentException($"spacing {kind.ToString().ToLowerInvariant()} depends on the noise schedule, not only on T", nameof(kind));
        if (steps == 1) return [numTimesteps - 1];
        var points = new double[steps];
        for (int i = 0; i < steps; i++)
            points[i] = kind switch
            {
                SpacingKind.Uniform => (double)i * (numTimesteps - 1) / (steps - 1),
                SpacingKind.Quadratic => Math.Pow(i * Math.Sqrt(numTimesteps * 0.8) / (steps - 1), 2),
                _ => throw new ArgumentOutOfRangeException(nameof(kind)),
            };
        return Distinct(points, numTimesteps, steps);
    }

    /// <summary>
    /// S distinct timesteps in ascending order for any spacing of <paramref name="schedule"/>. Lambda and Karras
    /// spacing are continuous in λ (Karras' σ is e^{−λ}); each point is mapped back to the discrete timestep whose λ_t
    /// is nearest after linear interpolation of λ between neighbouring timesteps, i.e. rounding the fractional t. Both
    /// run from t = T−1 to t = 0 exactly.
    /// </summary>
    public static int[] Ascending(NoiseSchedule schedule, int steps, SpacingKind kind)
    {
        if (kind is SpacingKind.Uniform or SpacingKind.Quadratic) return Ascending(schedule.T, steps, kind);
        int n = schedule.T;
        CheckSteps(n, steps);
        if (steps == 1) return [n - 1];
        var lambdas = LogSnr(schedule);
        double lambdaMin = lambdas[n - 1], lambdaMax = lambdas[0];
        var points = new double[steps];
        for (int i = 0; i < steps; i++)
        {
            double f = (double)i / (steps - 1); // 0 at t = 0, 1 at t = T−1
            double lambda = kind switch
            {
                SpacingKind.Lambda => lambdaMax + f * (lambdaMin - lambdaMax),
                SpacingKind.Karras => -KarrasRho * Math.Log(Math.Exp(-lambdaMax / KarrasRho)
                    + f * (Math.Exp(-lambdaMin / KarrasRho) - Math.Exp(-lambdaMax / KarrasRho))),
                _ => throw new ArgumentOutOfRangeException(nameof(kind)),
            };
            points[i] = FractionalTimestep(lambdas, lambda);
        }
        points[0] = 0;
        points[^1] = n - 1;
        return Distinct(points, n, steps);
    }

    /// <summary>λ_t = log(α_t/σ_t) = ½·log(ᾱ_t/(1 − ᾱ_t)) (Lu et al. 2022, DPM-Solver eq. 3.1) for every t; decreasing
    /// in t.</summary>
    public static double[] LogSnr(NoiseSchedule schedule) =>
        schedule.AlphasCumprod.Select(a => 0.5 * (Math.Log(a) - Math.Log(1 - a))).ToArray();

    /// <summary>The fractional t at which the piecewise-linear interpolation of the decreasing λ_t equals
    /// <paramref name="lambda"/>.</summary>
    private static double FractionalTimestep(double[] lambdas, double lambda)
    {
        if (lambda >= lambdas[0]) return 0;
        if (lambda <= lambdas[^1]) return lambdas.Length - 1;
        int lo = 0, hi = lambdas.Length - 1; // λ[lo] > λ ≥ λ[hi]
        while (hi - lo > 1)
        {
            int mid = (lo + hi) / 2;
            if (lambdas[mid] > lambda) lo = mid; else hi = mid;
        }
        return lo + (lambdas[lo] - lambda) / (lambdas[lo] - lambdas[hi]);
    }

    /// <summary>Throws unless <paramref name="descending"/> is non-empty, strictly decreasing, within 0..T−1.</summary>
    public static void CheckDescending(int numTimesteps, IReadOnlyList<int> descending)
    {
        if (descending.Count == 0)
            throw new ArgumentException("a sampler needs at least one timestep", nameof(descending));
        for (int i = 0; i < descending.Count; i++)
        {
            if (descending[i] < 0 || descending[i] >= numTimesteps)
                throw new ArgumentOutOfRangeException(nameof(descending),
                    $"timestep {descending[i]} is outside 0..{numTimesteps - 1}");
            if (i > 0 && descending[i] >= descending[i - 1])
                throw new ArgumentException("sampler timesteps must strictly decrease", nameof(descending));
        }
    }

    private static void CheckSteps(int numTimesteps, int steps)
    {
        if (steps < 1 || steps > numTimesteps)
            throw new ArgumentOutOfRangeException(nameof(steps), $"steps must lie in 1..T = 1..{numTimesteps}, got {steps}");
    }

    /// <summary>
    /// Rounds to timesteps and keeps each once. Where rounding merges neighbours (near t = 0 for quadratic, lambda and
    /// Karras spacing, whose points are denser than one per timestep there), the smallest unused timesteps are added so
    /// there are S: the grid keeps its S model calls and the extra ones go where it was already densest.
    /// </summary>
    private static int[] Distinct(double[] points, int numTimesteps, int steps)
    {
        var ts = new SortedSet<int>();
        foreach (var x in points) ts.Add(Math.Clamp((int)Math.Round(x), 0, numTimesteps - 1));
        for (int t = 0; ts.Count < steps; t++) ts.Add(t);
        return ts.ToArray();
    }
}
