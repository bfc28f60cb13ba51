using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>
/// Adam over one flat buffer. Every parameter of the model is re-pointed to a view of one contiguous tensor θ, and
/// Adam's moments m and v are views of two more, so an update is about twenty kernels for the whole model instead of
/// about seven per parameter tensor (TorchSharp's <see cref="Adam"/> runs a C# loop; the seed's U-Net has 300+
/// tensors, so thousands of kernel launches per step on a GPU).
/// <para>
/// The arithmetic is the same as TorchSharp's (and PyTorch's) Adam, element for element:
/// m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², θ ← θ − (lr/(1 − β₁ᵗ))·m/(√v/√(1 − β₂ᵗ) + ε).
/// The state lives in an ordinary <see cref="Adam"/> (<see cref="Optimizer"/>) whose per-parameter moments
/// are those views, so checkpoints keep TorchSharp's optimizer format and older checkpoints resume.
/// </para>
/// <para>
/// An update can be made conditional on a device-side flag (<see cref="Step(Tensor, Tensor?)"/>): a step with a
/// non-finite gradient leaves θ, m and v untouched without the host waiting for the GPU. The step counter t is kept on
/// the host assuming the update applied; <see cref="Unapply"/> corrects it once the host has read the flag.
/// </para>
/// <para>
/// Mixed precision: given a second, lower-precision copy of the model (<c>compute</c>, e.g. bfloat16), its parameters
/// become views of <see cref="ComputeWeights"/>; gradients are read from it and widened to float32, Adam updates the
/// float32 master weights, and one copy kernel refreshes the low-precision ones.
/// </para>
/// </summary>
public sealed class FlatAdam : IDisposable
{
    private readonly Parameter[] _parameters;
    private readonly Parameter[]? _compute;
    private readonly Adam.State[] _states;
    private readonly Tensor _m, _v;
    private readonly Adam.Options _options;

    /// <summary>The optimizer holding lr, β, ε and the per-parameter state (views of the flat moments).</summary>
    public Adam Optimizer { get; }
    /// <summary>All parameters, concatenated in <c>parameters()</c> order; each parameter is a view of it.</summary>
    public Tensor Weights { get; }
    /// <summary>The low-precision copy of <see cref="Weights"/> the compute model's parameters view, or null.</summary>
    public Tensor? ComputeWeights { get; }
    /// <summary>Updates applied (t in the bias corrections).</summary>
    public long Updates { get; private set; }
    /// <summary>Adam's first and second moments m and v, flat like <see cref="Weights"/> (for
    /// <see cref="TensorAdam"/>).</summary>
    internal Tensor ExpAvg => _m;
    internal Tensor ExpAvgSq => _v;
    /// <summary>lr, β₁, β₂ and ε as the optimizer holds them now (loading a checkpoint updates them in
    /// place).</summary>
    internal Adam.Options Options => _options;

    public FlatAdam(IEnumerable<Parameter> parameters, double lr, IEnumerable<Parameter>? compute = null)
    {
        _parameters = parameters.ToArray();
        if (_parameters.Length == 0) throw new ArgumentException("no parameters to optimize", nameof(parameters));
        var first = _parameters[0];
        if (_parameters.Any(p => p.dtype != first.dtype || p.device_type != first.device_type || p.device_index != first.device_index))
            throw new ArgumentException("all parameters must share one dtype and device to be flattened", nameof(parameters));

        Optimizer = optim.Adam(_parameters, lr);
        var state = Optimizer.state_dict();
        _states = state.State.Cast<Adam.State>().ToArray();
        _options = (Adam.Options)state.Options[0];
        using (no_grad())
        {
            Weights = Flatten(_parameters);
            _m = zeros_like(Weights).DetachFromDisposeScope();
            _v = zeros_like(Weights).DetachFromDisposeScope();
            long offset = 0;
            foreach (var (p, s) in _parameters.Zip(_states))
            {
                s.exp_avg.Dispose();
                s.exp_avg_sq.Dispose();
                s.exp_avg = View(_m, offset, p.shape);
                s.exp_avg_sq = View(_v, offset, p.shape);
                offset += p.numel();
            }
            if (compute is not null)
            {
                _compute = compute.ToArray();
                if (_compute.Length != _parameters.Length || _compute.Zip(_parameters).Any(c => !c.First.shape.SequenceEqual(c.Second.shape)))
                    throw new ArgumentException("the compute copy must have the same parameter shapes, in the same order", nameof(compute));
                ComputeWeights = Flatten(_compute);
                ComputeWeights.copy_(Weights);
            }
        }
        SyncUpdatesFromState();
    }

    /// <summary>
    /// Concatenates <paramref name="parameters"/> into one new contiguous buffer and re-points each to its view of it
    /// (values kept); returns the buffer.
    /// </summary>
    internal static Tensor Flatten(IReadOnlyList<Parameter> parameters)
    {
        using var noGrad = no_grad();
        var flat = cat(parameters.Select(p => p.detach().reshape(-1)).ToArray()).DetachFromDisposeScope();
        long offset = 0;
        foreach (var p in parameters)
        {
            p.set_(View(flat, offset, p.shape));
            offset += p.numel();
        }
        return flat;
    }

    private static Tensor View(Tensor flat, long offset, long[] shape) =>
        flat.narrow(0, offset, shape.Aggregate(1L, (a, b) => a * b)).view(shape).DetachFromDisposeScope();

    /// <summary>Reads t back from the per-parameter state (after loading a checkpoint into
    /// <see cref="Optimizer"/>).</summary>
    public void SyncUpdatesFromState()
    {
        long t = _states[0].step;
        if (_states.Any(s => s.step != t))
            throw new InvalidOperationException("the optimizer state holds different step counts per parameter; it was not saved by Adam over these parameters");
        Updates = t;
    }

    /// <summary>
    /// All gradients (of the compute copy, when there is one), concatenated like <see cref="Weights"/>, as float32
    /// (zeros for a parameter without one).
    /// </summary>
    public Tensor Gradients()
    {
        var source = _compute ?? _parameters;
        var flat = cat(source.Select(p => p.grad is { } g ? g.reshape(-1) : zeros(p.numel(), dtype: p.dtype, device: p.device)).ToArray());
        return _compute is null ? flat : flat.to(Weights.dtype);
    }

    /// <summary>Drops every gradient (the next backward pass writes fresh ones without a zeroing kernel).</summary>
    public void ZeroGrad()
    {
        foreach (var p in _compute ?? _parameters) p.grad = null;
    }

    /// <summary>
    /// One Adam update from <paramref name="gradients"/> (<see cref="Gradients"/>). With <paramref name="apply"/> (a
    /// bool scalar on the device) the new θ, m and v are kept only where it is true; no host synchronisation either
    /// way.
    /// </summary>
    public void Step(Tensor gradients, Tensor? apply = null)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var o = _options; // loading a checkpoint updates this object in place
        double beta1 = o.beta1!.Value, beta2 = o.beta2!.Value, eps = o.eps!.Value, lr = o.LearningRate!.Value;
        long t = Updates + 1;
        double biasCorrection1 = 1 - Math.Pow(beta1, t);
        double biasCorrection2 = 1 - Math.Pow(beta2, t);
        var g = gradients;
        if (apply is null)
        {
            _m.mul_(beta1).add_(g, alpha: 1 - beta1);
            _v.mul_(beta2).addcmul_(g, g, value: 1 - beta2);
            var denom = (_v.sqrt() / Math.Sqrt(biasCorrection2)).add_(eps);
            Weights.addcdiv_(_m, denom, value: -lr / biasCorrection1);
        }
        else
        {
            var m = _m.mul(beta1).add_(g, alpha: 1 - beta1);
            var v = _v.mul(beta2).addcmul_(g, g, value: 1 - beta2);
            var denom = (v.sqrt() / Math.Sqrt(biasCorrection2)).add_(eps);
            var theta = Weights.addcdiv(m, denom, value: -lr / biasCorrection1);
            _m.copy_(where(apply, m, _m));
            _v.copy_(where(apply, v, _v));
            Weights.copy_(where(apply, theta, Weights));
        }
        ComputeWeights?.copy_(Weights);
        Updates = t;
        foreach (var s in _states) s.step = t;
    }

    /// <summary>Takes back the step count of <paramref name="count"/> updates the device flag turned out to
    /// skip.</summary>
    public void Unapply(int count)
    {
        if (count < 0 || count > Updates) throw new ArgumentOutOfRangeException(nameof(count));
        Updates -= count;
        foreach (var s in _states) s.step = Updates;
    }

    public void Dispose()
    {
        Optimizer.Dispose();
        _m.Dispose();
        _v.Dispose();
        Weights.Dispose();
        ComputeWeights?.Dispose();
    }
}
