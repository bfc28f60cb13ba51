using Ddpm.Diffusion;
using Ddpm.Runtime;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// One finished step of <see cref="SamplingLoop"/>: x before the step, the ε the sampler used, and x after it.
/// The tensors live only until the callback returns.
/// </summary>
public readonly record struct SamplingStep(int Index, int Timestep, Tensor X, Tensor Eps, Tensor Next);

/// <summary>Runs any <see cref="ISampler"/> from pure noise to an image (the seed's "从纯噪声到图像").</summary>
public static class SamplingLoop
{
    /// <summary>
    /// The loop every generation path runs: from <paramref name="xT"/> (consumed: the caller must not use it
    /// afterwards) through every sampler step under no_grad, each in its own dispose scope. <paramref name="noise"/>(i)
    /// gives z for step i and is called only for steps that use noise (<see cref="ISampler.UsesNoise"/>).
    /// <paramref name="cancel"/> is checked before every step, so a cancellation stops the loop within one step
    /// (OperationCanceledException).
    /// </summary>
    public static Tensor Run(ISampler sampler, NoisePredictor model, Tensor xT, Func<int, Tensor> noise,
        Action<SamplingStep>? onStep = null, CancellationToken cancel = default)
    {
        TorchSharpPatch.EnsureApplied();
        using var noGrad = no_grad();
        var x = xT;
        var steps = sampler.Timesteps;
        try
        {
            for (int i = 0; i < steps.Count; i++)
            {
                cancel.ThrowIfCancellationRequested();
                using var scope = NewDisposeScope();
                var t = full(x.shape[0], (long)steps[i], dtype: int64, device: x.device);
                var eps = model(x, t);
                var next = sampler.Step(eps, i, x, sampler.UsesNoise(i) ? noise(i) : null);
                onStep?.Invoke(new SamplingStep(i, steps[i], x, eps, next));
                next.MoveToOuterDisposeScope();
                x.Dispose();
                x = next;
                NativeGarbage.CollectIfDue();
            }
            return x;
        }
        catch
        {
            x.Dispose();
            throw;
        }
    }

    /// <summary>
    /// x_T ~ N(0, I) of <paramref name="shape"/>, then the loop with step noise from the same
    /// <paramref name="generator"/> (one stream for the whole batch). <paramref name="onStep"/> sees (step index,
    /// timestep, x after the step) and must not keep the tensor.
    /// </summary>
    public static Tensor Run(ISampler sampler, NoisePredictor model, long[] shape, Device device, Generator? generator = null,
        Action<int, int, Tensor>? onStep = null)
    {
        TorchSharpPatch.EnsureApplied();
        var x = randn(shape, dtype: float32, device: device, generator: generator);
        return Run(sampler, model, x, generator, onStep);
    }

    /// <summary>The same from a given x_T (consumed: the caller must not use it afterwards).</summary>
    public static Tensor Run(ISampler sampler, NoisePredictor model, Tensor xT, Generator? generator = null,
        Action<int, int, Tensor>? onStep = null)
    {
        var (shape, dtype, device) = (xT.shape, xT.dtype, xT.device);
        return Run(sampler, model, xT, _ => randn(shape, dtype: dtype, device: device, generator: generator),
            onStep is null ? null : s => onStep(s.Index, s.Timestep, s.Next));
    }
}
