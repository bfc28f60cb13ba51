using Ddpm.Diffusion;

namespace Ddpm.Sampling;

/// <summary>
/// The noise levels a probability-flow ODE solver steps through (Lu et al. 2022, DPM-Solver §3): for each visited
/// timestep τ_i (noisiest first) α_i = √ᾱ_{τ_i}, σ_i = √(1 − ᾱ_{τ_i}) and λ_i = log(α_i/σ_i); after the last one the
/// clean end, α = 1, σ = 0, λ = +∞, where the solver returns its data prediction x̂_0 (as DDIM does here).
/// </summary>
public sealed class SolverGrid
{
    private readonly double[] _alpha, _sigma, _lambda;

    /// <summary>The visited model timesteps, noisiest first.</summary>
    public IReadOnlyList<int> Timesteps { get; }

    /// <summary>Number of model calls S.</summary>
    public int Count => Timesteps.Count;

    /// <summary>The grid of <paramref name="steps"/> timesteps of <paramref name="schedule"/> spaced by
    /// <paramref name="spacing"/>.</summary>
    public SolverGrid(NoiseSchedule schedule, int steps, SpacingKind spacing)
        : this(schedule, TimestepSpacing.Ascending(schedule, steps, spacing).Reverse().ToArray())
    {
    }

    /// <summary>A grid over explicit timesteps, which must strictly decrease and lie in 0..T−1.</summary>
    public SolverGrid(NoiseSchedule schedule, IReadOnlyList<int> descending)
    {
        if (descending.Count == 0) throw new ArgumentException("a solver grid needs at least one timestep", nameof(descending));
        for (int i = 0; i < descending.Count; i++)
        {
            if (descending[i] < 0 || descending[i] >= schedule.T)
                throw new ArgumentOutOfRangeException(nameof(descending), $"timestep {descending[i]} is outside 0..{schedule.T - 1}");
            if (i > 0 && descending[i] >= descending[i - 1])
                throw new ArgumentException("solver timesteps must strictly decrease", nameof(descending));
        }
        Timesteps = descending.ToArray();
        int n = descending.Count;
        _alpha = new double[n + 1];
        _sigma = new double[n + 1];
        _lambda = new double[n + 1];
        for (int i = 0; i < n; i++)
        {
            double a = schedule.AlphasCumprod[descending[i]];
            _alpha[i] = Math.Sqrt(a);
            _sigma[i] = Math.Sqrt(1 - a);
            _lambda[i] = 0.5 * (Math.Log(a) - Math.Log(1 - a));
        }
        _alpha[n] = 1;
        _sigma[n] = 0;
        _lambda[n] = double.PositiveInfinity;
    }

    /// <summary>α at grid point <paramref name="i"/> ∈ 0..S (S = the clean end, 1).</summary>
    public double Alpha(int i) => _alpha[i];
    /// <summary>σ at grid point <paramref name="i"/> ∈ 0..S (S = the clean end, 0).</summary>
    public double Sigma(int i) => _sigma[i];
    /// <summary>λ = log(α/σ) at grid point <paramref name="i"/> ∈ 0..S (S = the clean end, +∞).</summary>
    public double Lambda(int i) => _lambda[i];

    /// <summary>True for the step from the last visited timestep to the clean end.</summary>
    public bool IsFinal(int index) => index == Count - 1;
}
