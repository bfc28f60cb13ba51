namespace Ddpm.Onnx.Sampling;

/// <summary>How a sampler with S &lt; T steps picks its timesteps (the TorchSharp library's spacings, same
/// definitions).</summary>
public enum SpacingKind
{
    /// <summary>Evenly spaced from 0 to T−1.</summary>
    Uniform,
    /// <summary>round((i·√(0.8T)/(S−1))²) (DDIM's "quadratic", Song et al. 2021 §D.2).</summary>
    Quadratic,
    /// <summary>Evenly spaced in log-SNR λ (Lu et al. 2022, DPM-Solver §3.3).</summary>
    Lambda,
    /// <summary>Karras et al. 2022, eq. 5, ρ = 7, σ = e^{−λ}.</summary>
    Karras,
}

/// <summary>Timestep sub-sequences τ_1 &lt; … &lt; τ_S of {0..T−1}.</summary>
public static class TimestepSpacing
{
    public const double KarrasRho = 7.0;

    /// <summary>
    /// S distinct timesteps in ascending order. Lambda and Karras points are continuous in λ and mapped to the
    /// fractional timestep where the piecewise-linear λ_t equals them, then rounded; points merged by rounding are
    /// replaced by the smallest unused timesteps, so there are always S.
    /// </summary>
    public static int[] Ascending(DiffusionSchedule schedule, int steps, SpacingKind kind)
    {
        int n = schedule.T;
        if (steps < 1 || steps > n) throw new ArgumentOutOfRangeException(nameof(steps), $"steps must lie in 1..T = 1..{n}, got {steps}");
        if (steps == 1) return [n - 1];
        var points = new double[steps];
        if (kind is SpacingKind.Uniform or SpacingKind.Quadratic)
        {
            for (int i = 0; i < steps; i++)
                points[i] = kind == SpacingKind.Uniform
                    ? (double)i * (n - 1) / (steps - 1)
                    : Math.Pow(i * Math.Sqrt(n * 0.8) / (steps - 1), 2);
            return Distinct(points, n, steps);
        }
        var lambdas = schedule.LogSnr();
        double lambdaMin = lambdas[n - 1], lambdaMax = lambdas[0];
        for (int i = 0; i < steps; i++)
        {
            double f = (double)i / (steps - 1);
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

    private static double FractionalTimestep(double[] lambdas, double lambda)
    {
        if (lambda >= lambdas[0]) return 0;
        if (lambda <= lambdas[^1]) return lambdas.Length - 1;
        int lo = 0, hi = lambdas.Length - 1;
        while (hi - lo > 1)
        {
            int mid = (lo + hi) / 2;
            if (lambdas[mid] > lambda) lo = mid; else hi = mid;
        }
        return lo + (lambdas[lo] - lambda) / (lambdas[lo] - lambdas[hi]);
    }

    private static int[] Distinct(double[] points, int numTimesteps, int steps)
    {
        var ts = new SortedSet<int>();
        foreach (var x in points) ts.Add(Math.Clamp((int)Math.Round(x), 0, numTimesteps - 1));
        for (int t = 0; ts.Count < steps; t++) ts.Add(t);
        return ts.ToArray();
    }
}
