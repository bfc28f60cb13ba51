namespace Ddpm.Sampling;

/// <summary>How a sampler with S &lt; T steps picks its sub-sequence of the T model timesteps.</summary>
public enum SpacingKind
{
    /// <summary>Evenly spaced from 0 to T−1 (DDIM's "uniform").</summary>
    Uniform,
    /// <summary>Denser near t = 0: round((i·√(0.8T)/(S−1))²) (DDIM's "quadratic", Song et al. 2021 §D.2).</summary>
    Quadratic,
}

/// <summary>Timestep sub-sequences τ_1 &lt; … &lt; τ_S of {0..T−1}.</summary>
public static class TimestepSpacing
{
    /// <summary>S distinct timesteps in ascending order; always contains 0 and, for uniform spacing, T−1.</summary>
    public static int[] Ascending(int numTimesteps, int steps, SpacingKind kind = SpacingKind.Uniform)
    {
        if (steps < 1 || steps > numTimesteps)
            throw new ArgumentOutOfRangeException(nameof(steps), $"steps must lie in 1..T = 1..{numTimesteps}, got {steps}");
        if (steps == 1) return [numTimesteps - 1];
        var ts = new SortedSet<int>();
        for (int i = 0; i < steps; i++)
        {
            double x = kind switch
            {
                SpacingKind.Uniform => (double)i * (numTimesteps - 1) / (steps - 1),
                SpacingKind.Quadratic => Math.Pow(i * Math.Sqrt(numTimesteps * 0.8) / (steps - 1), 2),
                _ => throw new ArgumentOutOfRangeException(nameof(kind)),
            };
            ts.Add(Math.Clamp((int)Math.Round(x), 0, numTimesteps - 1));
        }
        // Rounding can merge neighbours near 0 (quadratic): fill from the smallest unused timesteps so there are S.
        for (int t = 0; ts.Count < steps; t++) ts.Add(t);
        return ts.ToArray();
    }
}
