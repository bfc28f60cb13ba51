using Ddpm.Diffusion;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>Runs any <see cref="ISampler"/> from pure noise to an image (the seed's "从纯噪声到图像").</summary>
public static class SamplingLoop
{
    /// <summary>
    /// x_T ~ N(0, I) of <paramref name="shape"/>, then every sampler step under no_grad, each in its own dispose scope.
    /// <paramref name="onStep"/> sees (step index, timestep, x after the step) and must not keep the tensor.
    /// </summary>
    public static Tensor Run(ISampler sampler, NoisePredictor model, long[] shape, Device device, Generator? generator = null,
        Action<int, int, Tensor>? onStep = null)
    {
        var x = randn(shape, dtype: float32, device: device, generator: generator);
        return Run(sampler, model, x, generator, onStep);
    }

    /// <summary>The same from a given x_T (consumed: the caller must not use it afterwards).</summary>
    public static Tensor Run(ISampler sampler, NoisePredictor model, Tensor xT, Generator? generator = null,
        Action<int, int, Tensor>? onStep = null)
    {
        using var noGrad = no_grad();
        var x = xT;
        var steps = sampler.Timesteps;
        for (int i = 0; i < steps.Count; i++)
        {
            using var scope = NewDisposeScope();
            var t = full(x.shape[0], (long)steps[i], dtype: int64, device: x.device);
            var next = sampler.Step(model(x, t), i, x, generator);
            onStep?.Invoke(i, steps[i], next);
            next.MoveToOuterDisposeScope();
            x.Dispose();
            x = next;
        }
        return x;
    }
}
