using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>
/// <see cref="ExponentialMovingAverage"/>'s flat update with its update count n on the device, for a training step
/// captured in a CUDA graph: θ_ema ← θ_ema + w·(θ − θ_ema) with w = (1 − d)·[apply], d = min(decay, (1 + n)/(10 + n))
/// (improved-diffusion's warm-up), n counting every step taken, applied or not, as the trainer's step count does.
/// </summary>
public sealed class DeviceEma : IDisposable
{
    private readonly ExponentialMovingAverage _ema;
    private readonly Tensor _n;

    /// <param name="steps">Steps taken so far (n of the next update), e.g. <see cref="Trainer.Step"/>.</param>
    public DeviceEma(ExponentialMovingAverage ema, long steps)
    {
        _ema = ema;
        _n = full(Array.Empty<long>(), (double)steps, dtype: float64, device: ema.Flat.device).DetachFromDisposeScope();
    }

    /// <summary>n on the device (0-dim float64).</summary>
    internal Tensor Count => _n;

    /// <summary>The average this updates.</summary>
    public ExponentialMovingAverage Average => _ema;

    /// <summary>
    /// One update from all weights flattened in <c>parameters()</c> order (<see cref="FlatAdam.Weights"/>), kept where
    /// <paramref name="apply"/> is true; n advances where <paramref name="counts"/> is true (both bool scalars on the
    /// device). No host synchronisation; capturable.
    /// </summary>
    public void Update(Tensor weights, Tensor apply, Tensor counts)
    {
        var flat = _ema.Flat;
        if (weights.numel() != flat.numel())
            throw new ArgumentException($"expected {flat.numel()} flattened weights, got {weights.numel()}", nameof(weights));
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        var d = ((1 + _n) / (10 + _n)).clamp_max(_ema.Decay);
        var w = apply.to(flat.dtype) * (1 - d).to(flat.dtype);
        flat.lerp_(weights, w);
        _n.add_(counts.to(float64));
    }

    /// <summary>n: steps counted so far (reads the device).</summary>
    public long ReadSteps() => (long)_n.item<double>();

    public void Dispose() => _n.Dispose();
}
