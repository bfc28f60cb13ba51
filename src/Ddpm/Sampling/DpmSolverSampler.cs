using Ddpm.Diffusion;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// DPM-Solver++ (Lu et al. 2022, "DPM-Solver++", Algorithm 2): multistep solver of the probability-flow ODE in
/// data-prediction form, x_{i+1} = (σ_{i+1}/σ_i) x_i − α_{i+1}(e^{−h_i} − 1) D_i with h_i = λ_{i+1} − λ_i and D_i a
/// Taylor combination of the current and previous x̂_0. Order 1 is DDIM (η = 0), order 2 is "2M"; the first step is
/// first order (no history yet). After the last visited timestep the solver returns x̂_0 (ᾱ = 1), as DDIM does here.
/// One instance samples one batch at a time (it keeps the previous x̂_0).
/// </summary>
public sealed class DpmSolverSampler : ISampler
{
    private readonly SolverGrid _grid;
    private readonly X0Correction _correction;
    private readonly ModelOutputHistory _history;

    public IReadOnlyList<int> Timesteps => _grid.Timesteps;
    /// <summary>The solver's order (1 or 2).</summary>
    public int Order { get; }
    /// <summary>True for DPM-Solver++(2M) SDE (Lu et al. 2022, "DPM-Solver++", §5 and appendix: the SDE
    /// variant).</summary>
    public bool Stochastic { get; }

    public DpmSolverSampler(NoiseSchedule schedule, int steps, SpacingKind spacing = SpacingKind.Uniform, int order = 2,
        bool stochastic = false, X0Correction? correction = null)
        : this(new SolverGrid(schedule, steps, spacing), order, stochastic, correction)
    {
    }

    public DpmSolverSampler(SolverGrid grid, int order = 2, bool stochastic = false, X0Correction? correction = null)
    {
        if (order is < 1 or > 2) throw new ArgumentOutOfRangeException(nameof(order), $"DPM-Solver++ order must be 1 or 2, got {order}");
        _grid = grid;
        Order = order;
        Stochastic = stochastic;
        _correction = correction ?? X0Correction.None;
        _history = new ModelOutputHistory(order - 1);
    }

    /// <summary>Only the SDE variant draws noise, and not on its last step (which returns x̂_0).</summary>
    public bool UsesNoise(int index) => Stochastic && !_grid.IsFinal(index);

    public Tensor Step(Tensor eps, int index, Tensor x, Tensor? noise)
    {
        if (UsesNoise(index) && noise is null)
            throw new ArgumentException($"the DPM-Solver++(2M) SDE step {index} needs noise z", nameof(noise));
        _history.Begin(index, "DPM-Solver++");
        using var scope = NewDisposeScope();
        var d0 = DataPrediction.FromEps(x, eps, _grid.Alpha(index), _grid.Sigma(index), _correction);
        if (_grid.IsFinal(index))
        {
            _history.Clear();
            return d0.MoveToOuterDisposeScope(); // h = ∞: every order reduces to x̂_0
        }
        int order = Math.Min(Order, _history.Count + 1);

        double h = _grid.Lambda(index + 1) - _grid.Lambda(index);
        double alphaNext = _grid.Alpha(index + 1), sigmaRatio = _grid.Sigma(index + 1) / _grid.Sigma(index);
        Tensor next;
        if (Stochastic)
        {
            // x_{i+1} = (σ_{i+1}/σ_i) e^{−h} x_i + α_{i+1}(1 − e^{−2h})(D_i + ½·D'_i) + σ_{i+1} √(1 − e^{−2h}) z
            double decay = -ExponentialIntegrator.Expm1(-2 * h);
            var d = order == 1 ? d0 : d0 + 0.5 * FirstDifference(d0, index);
            next = sigmaRatio * Math.Exp(-h) * x + alphaNext * decay * d + _grid.Sigma(index + 1) * Math.Sqrt(decay) * noise!;
        }
        else
        {
            double phi1 = ExponentialIntegrator.Expm1(-h); // e^{−h} − 1
            // 2M: D = D_i + ½·(D_i − D_{i−1})/r, r = h_{i−1}/h_i (Algorithm 2)
            var d = order == 1 ? d0 : d0 + 0.5 * FirstDifference(d0, index);
            next = sigmaRatio * x - alphaNext * phi1 * d;
        }
        _history.Push(index, d0);
        return next.MoveToOuterDisposeScope();
    }

    /// <summary>(D_i − D_{i−1})/r with r = (λ_i − λ_{i−1})/h_i: h·dD/dλ by a backward difference.</summary>
    private Tensor FirstDifference(Tensor d0, int index)
    {
        var (prevIndex, d1) = _history[0];
        double r = (_grid.Lambda(index) - _grid.Lambda(prevIndex)) / (_grid.Lambda(index + 1) - _grid.Lambda(index));
        return (d0 - d1) / r;
    }
}
