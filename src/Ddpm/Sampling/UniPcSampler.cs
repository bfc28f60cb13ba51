using Ddpm.Diffusion;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// UniPC (Zhao et al. 2023, Algorithm 2 with B(h) = e^{−h} − 1, "bh2"; data prediction): a multistep predictor UniP-p
/// and a corrector UniC-p that reuses the model call made at the predicted point, raising the order to p + 1 at no
/// extra model calls. UniP-1 is DDIM (η = 0) and UniP-2 with bh2 is DPM-Solver++(2M). Step i first corrects x_i
/// (predicted by step i − 1) with the new x̂_0, then predicts x_{i+1}: what Step returns is the predictor's x_{i+1}
/// (where the model is called next), and the next step continues from its corrected value. The predictor's order
/// falls back to what the history allows and to S − i near the end. The last step returns x̂_0 (ᾱ = 1) and no
/// corrector follows it. One instance samples one batch at a time (it keeps the last p x̂_0 and the x the last step
/// started from).
/// </summary>
public sealed class UniPcSampler : ISampler
{
    private readonly SolverGrid _grid;
    private readonly X0Correction _correction;
    private readonly ModelOutputHistory _history;
    private Tensor? _lastX;
    private int _lastOrder;

    public IReadOnlyList<int> Timesteps => _grid.Timesteps;
    /// <summary>The predictor's order p (1, 2 or 3); the corrector makes the method order p + 1.</summary>
    public int Order { get; }
    /// <summary>Whether UniC runs (false leaves the predictor UniP alone).</summary>
    public bool Corrector { get; }

    public UniPcSampler(NoiseSchedule schedule, int steps, SpacingKind spacing = SpacingKind.Uniform, int order = 2,
        bool corrector = true, X0Correction? correction = null)
        : this(new SolverGrid(schedule, steps, spacing), order, corrector, correction)
    {
    }

    public UniPcSampler(SolverGrid grid, int order = 2, bool corrector = true, X0Correction? correction = null)
    {
        if (order is < 1 or > 3) throw new ArgumentOutOfRangeException(nameof(order), $"UniPC order must be 1, 2 or 3, got {order}");
        _grid = grid;
        Order = order;
        Corrector = corrector;
        _correction = correction ?? X0Correction.None;
        _history = new ModelOutputHistory(order);
    }

    /// <summary>UniPC is deterministic: no step needs noise.</summary>
    public bool UsesNoise(int index) => false;

    public Tensor Step(Tensor eps, int index, Tensor x, Tensor? noise)
    {
        _history.Begin(index, "UniPC");
        if (index == 0) ReleaseLastX();
        using var scope = NewDisposeScope();
        var d = DataPrediction.FromEps(x, eps, _grid.Alpha(index), _grid.Sigma(index), _correction);
        if (_grid.IsFinal(index))
        {
            // h = ∞: the predictor returns x̂_0 whatever x is, so correcting x first would change nothing.
            _history.Clear();
            ReleaseLastX();
            return d.MoveToOuterDisposeScope();
        }
        var current = x;
        if (Corrector && _lastX is not null) current = Correct(d, index);
        _history.Push(index, d);

        int order = Math.Min(Math.Min(Order, _history.Count), _grid.Count - index);
        var next = Predict(current, index, order);
        ReleaseLastX();
        _lastX = current.detach().clone().DetachFromDisposeScope();
        _lastOrder = order;
        return next.MoveToOuterDisposeScope();
    }

    /// <summary>UniP-p (Algorithm 2): from x_i and the last p data predictions (newest made at i) to x_{i+1}.</summary>
    private Tensor Predict(Tensor x, int index, int order)
    {
        double h = _grid.Lambda(index + 1) - _grid.Lambda(index);
        var (r, diffs) = Differences(index, h, order - 1);
        // p = 2 with bh2: a_1 = ½ (the paper's choice, equal to DPM-Solver++(2M)); p = 3 solves the order conditions.
        double[] a = order switch
        {
            1 => [],
            2 => [0.5],
            _ => Solve(r, RightHandSide(h, order - 1)),
        };
        return Update(x, index, h, diffs, a, null, 0);
    }

    /// <summary>
    /// UniC-p (Algorithm 2): x_i again from x_{i−1}, now using x̂_0 at the predicted x_i (<paramref name="d"/>) as one
    /// more point (r = 1). p is the order the predictor used for that step; p = 1 uses a = ½ (the paper's choice).
    /// </summary>
    private Tensor Correct(Tensor d, int index)
    {
        int from = index - 1, order = _lastOrder;
        double h = _grid.Lambda(index) - _grid.Lambda(from);
        var (r, diffs) = Differences(from, h, order - 1);
        double[] a = order == 1 ? [0.5] : Solve([.. r, 1.0], RightHandSide(h, order));
        return Update(_lastX!, from, h, diffs, a[..^1], d, a[^1]);
    }

    /// <summary>
    /// The step from grid point <paramref name="from"/>, whose prediction D_from is the newest in the history:
    /// (σ_{j+1}/σ_j) x − α_{j+1}(e^{−h} − 1) D_from − α_{j+1} B(h) [Σ_k a_k (D_{s_k} − D_from)/r_k + a_new (D_new −
    /// D_from)] with B(h) = e^{−h} − 1 (bh2).
    /// </summary>
    private Tensor Update(Tensor x, int from, double h, Tensor[] diffs, double[] a, Tensor? dNew, double aNew)
    {
        using var scope = NewDisposeScope();
        var d0 = _history[0].D;
        double phi = ExponentialIntegrator.Expm1(-h);
        double alphaNext = _grid.Alpha(from + 1);
        var result = _grid.Sigma(from + 1) / _grid.Sigma(from) * x - alphaNext * phi * d0;
        Tensor? residual = null;
        for (int k = 0; k < diffs.Length; k++) residual = residual is null ? a[k] * diffs[k] : residual + a[k] * diffs[k];
        if (dNew is not null) residual = residual is null ? aNew * (dNew - d0) : residual + aNew * (dNew - d0);
        if (residual is not null) result = result - alphaNext * phi * residual;
        return result.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// For the <paramref name="count"/> predictions before the newest one (made at <paramref name="from"/>):
    /// r_k = (λ_{s_k} − λ_from)/h (negative) and (D_{s_k} − D_from)/r_k.
    /// </summary>
    private (double[] R, Tensor[] Diffs) Differences(int from, double h, int count)
    {
        var (newest, d0) = _history[0];
        if (newest != from) throw new InvalidOperationException($"UniPC history is at step {newest}, expected {from}");
        var r = new double[count];
        var diffs = new Tensor[count];
        for (int k = 0; k < count; k++)
        {
            var (index, dk) = _history[1 + k];
            r[k] = (_grid.Lambda(index) - _grid.Lambda(from)) / h;
            diffs[k] = (dk - d0) / r[k];
        }
        return (r, diffs);
    }

    /// <summary>
    /// The order conditions' right-hand side (Zhao et al. 2023, Theorem 3.1): g_n = n!·hh·φ_{n+1}(hh)/B(h) for
    /// n = 1..count, hh = −h (data prediction), B(h) = e^{hh} − 1 (bh2).
    /// </summary>
    private static double[] RightHandSide(double h, int count)
    {
        double hh = -h, b = ExponentialIntegrator.Expm1(hh), factorial = 1;
        var g = new double[count];
        for (int n = 1; n <= count; n++)
        {
            factorial *= n;
            g[n - 1] = factorial * hh * ExponentialIntegrator.Phi(n + 1, hh) / b;
        }
        return g;
    }

    /// <summary>Solves Σ_k a_k r_k^{n−1} = g_n (n = 1..m) for a: the Vandermonde system of UniPC's order
    /// conditions.</summary>
    private static double[] Solve(double[] r, double[] g)
    {
        int m = r.Length;
        var matrix = new double[m, m + 1];
        for (int n = 0; n < m; n++)
        {
            for (int k = 0; k < m; k++) matrix[n, k] = Math.Pow(r[k], n);
            matrix[n, m] = g[n];
        }
        for (int col = 0; col < m; col++) // Gaussian elimination with partial pivoting (m ≤ 3)
        {
            int pivot = col;
            for (int row = col + 1; row < m; row++) if (Math.Abs(matrix[row, col]) > Math.Abs(matrix[pivot, col])) pivot = row;
            for (int k = 0; k <= m; k++) (matrix[col, k], matrix[pivot, k]) = (matrix[pivot, k], matrix[col, k]);
            for (int row = 0; row < m; row++)
            {
                if (row == col) continue;
                double f = matrix[row, col] / matrix[col, col];
                for (int k = col; k <= m; k++) matrix[row, k] -= f * matrix[col, k];
            }
        }
        var a = new double[m];
        for (int k = 0; k < m; k++) a[k] = matrix[k, m] / matrix[k, k];
        return a;
    }

    private void ReleaseLastX()
    {
        _lastX?.Dispose();
        _lastX = null;
    }
}
