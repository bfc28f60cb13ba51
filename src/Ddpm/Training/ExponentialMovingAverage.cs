using Ddpm.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>
/// An exponential moving average of the weights, θ_ema ← d·θ_ema + (1 − d)·θ with the warm-up
/// d = min(decay, (1 + n)/(10 + n)) after n updates (as in improved-diffusion / TensorFlow's EMA with num_updates).
/// Kept as a second U-Net, so it samples, saves and exports like any model; its parameters are views of one flat
/// buffer, so an update from the trainer's flat weights (<see cref="FlatAdam.Weights"/>) is one kernel.
/// </summary>
public sealed class ExponentialMovingAverage : IDisposable
{
    public double Decay { get; }
    public UNet Shadow { get; }
    private readonly Tensor _flat;
    /// <summary>The shadow's weights, flat in <c>parameters()</c> order (for <see cref="DeviceEma"/>).</summary>
    internal Tensor Flat => _flat;

    public ExponentialMovingAverage(UNet model, double decay)
    {
        if (!(decay > 0 && decay < 1)) throw new ArgumentOutOfRangeException(nameof(decay), $"decay must lie in (0, 1), got {decay}");
        Decay = decay;
        Shadow = new UNet(model.Options);
        Shadow.to(model.parameters().First().device);
        CopyFrom(model);
        Shadow.eval();
        foreach (var p in Shadow.parameters()) p.requires_grad = false;
        _flat = FlatAdam.Flatten(Shadow.parameters().ToArray());
    }

    /// <summary>The decay used for update number <paramref name="updates"/> (0-based): min(decay, (1 + n)/(10 +
    /// n)).</summary>
    public double DecayAt(long updates) => Math.Min(Decay, (1.0 + updates) / (10.0 + updates));

    /// <summary>
    /// One update after optimizer step number <paramref name="updates"/> + 1, from all weights flattened in
    /// <c>parameters()</c> order (<see cref="FlatAdam.Weights"/>): θ_ema ← θ_ema + (1 − d)(θ − θ_ema). With
    /// <paramref name="apply"/> (a bool scalar on the device) false, nothing changes, without a host synchronisation.
    /// </summary>
    public void Update(Tensor weights, long updates, Tensor? apply = null)
    {
        if (weights.numel() != _flat.numel())
            throw new ArgumentException($"expected {_flat.numel()} flattened weights, got {weights.numel()}", nameof(weights));
        double d = DecayAt(updates);
        using var scope = NewDisposeScope();
        using var noGrad = no_grad();
        // A fill kernel, not a host-to-device copy (which would synchronise).
        var w = apply is null ? full(Array.Empty<long>(), 1 - d, dtype: _flat.dtype, device: _flat.device) : apply.to(_flat.dtype) * (1 - d);
        _flat.lerp_(weights, w);
    }

    /// <summary>Sets the average to the model's current weights.</summary>
    public void CopyFrom(UNet model)
    {
        using var noGrad = no_grad();
        foreach (var (ema, p) in Shadow.parameters().Zip(model.parameters())) ema.copy_(p);
    }

    public void Dispose()
    {
        Shadow.Dispose();
        _flat.Dispose();
    }
}
