using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>
/// <see cref="FlatAdam"/>'s update with every per-step scalar on the device, for a training step captured in a CUDA
/// graph (<see cref="GraphedTrainingStep"/>): a graph keeps the host scalars of its capture forever, so the step count
/// t, the learning rate and the bias corrections are 0-dim float64 tensors that kernels update. The arithmetic is
/// FlatAdam's (Kingma &amp; Ba 2015, Algorithm 1 as PyTorch writes it), element for element:
/// m ← β₁m + (1 − β₁)g, v ← β₂v + (1 − β₂)g², θ ← θ + (−lr/(1 − β₁ᵗ))·m/(√v/√(1 − β₂ᵗ) + ε),
/// kept only where a device flag is true, and t advances by that flag (so a skipped non-finite step does not count,
/// with no host read). It works on FlatAdam's own buffers (θ, m, v, the bf16 copy): checkpoints are still written
/// through FlatAdam's optimizer state, after <see cref="WriteBack"/>.
/// </summary>
public sealed class TensorAdam : IDisposable
{
    private readonly FlatAdam _flat;
    private readonly Tensor _t, _lr, _beta1, _beta2;

    /// <summary>Starts from <paramref name="flat"/>'s step count and learning rate.</summary>
    public TensorAdam(FlatAdam flat)
    {
        _flat = flat;
        var device = flat.Weights.device;
        var o = flat.Options;
        _t = Scalar(flat.Updates, device);
        _lr = Scalar(o.LearningRate!.Value, device);
        _beta1 = Scalar(o.beta1!.Value, device);
        _beta2 = Scalar(o.beta2!.Value, device);
    }

    private static Tensor Scalar(double value, Device device) =>
        full(Array.Empty<long>(), value, dtype: float64, device: device).DetachFromDisposeScope();

    /// <summary>t on the device (0-dim float64): updates applied so far.</summary>
    internal Tensor Count => _t;

    /// <summary>The optimizer whose buffers this updates.</summary>
    public FlatAdam Flat => _flat;

    /// <summary>
    /// Copies the optimizer's learning rate to the device (a fill kernel: call it outside a captured step, before a
    /// replay, after changing the rate, e.g. from a schedule).
    /// </summary>
    public void SyncLearningRate() => _lr.fill_(_flat.Options.LearningRate!.Value);

    /// <summary>
    /// One Adam update from <paramref name="gradients"/> (<see cref="FlatAdam.Gradients"/>), kept where
    /// <paramref name="apply"/> (a bool scalar on the device) is true. No host synchronisation; capturable.
    /// </summary>
    public void Step(Tensor gradients, Tensor apply)
    {
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var o = _flat.Options;
        double beta1 = o.beta1!.Value, beta2 = o.beta2!.Value, eps = o.eps!.Value;
        var weights = _flat.Weights;
        var g = gradients;
        // Bias corrections in float64 like FlatAdam's host arithmetic; the kernels below round them to float32 as
        // FlatAdam's scalar arguments are rounded.
        var t = _t + 1;
        var stepSize = (_lr.neg() / (1 - _beta1.pow(t))).to(weights.dtype);
        var sqrtCorrection2 = (1 - _beta2.pow(t)).sqrt().to(weights.dtype);
        var m = _flat.ExpAvg.mul(beta1).add_(g, alpha: 1 - beta1);
        var v = _flat.ExpAvgSq.mul(beta2).addcmul_(g, g, value: 1 - beta2);
        var denom = (v.sqrt() / sqrtCorrection2).add_(eps);
        // addcdiv(θ, m, denom, value: s) computes θ + (s·m)/denom: the same three roundings.
        var theta = (m * stepSize).div_(denom).add_(weights);
        _flat.ExpAvg.copy_(where(apply, m, _flat.ExpAvg));
        _flat.ExpAvgSq.copy_(where(apply, v, _flat.ExpAvgSq));
        weights.copy_(where(apply, theta, weights));
        _t.add_(apply.to(float64));
        _flat.ComputeWeights?.copy_(weights);
    }

    /// <summary>Updates applied so far (reads the device: a host synchronisation).</summary>
    public long ReadUpdates() => (long)_t.item<double>();

    /// <summary>
    /// Copies t back into the optimizer's state (a host synchronisation), so <see cref="FlatAdam.Updates"/> and a
    /// checkpoint written now are right.
    /// </summary>
    public void WriteBack()
    {
        long t = ReadUpdates();
        foreach (var s in _flat.Optimizer.state_dict().State.Cast<Adam.State>()) s.step = t;
        _flat.SyncUpdatesFromState();
    }

    public void Dispose()
    {
        _t.Dispose();
        _lr.Dispose();
        _beta1.Dispose();
        _beta2.Dispose();
    }
}
