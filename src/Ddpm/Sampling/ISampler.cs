using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// One reverse-process scheme (diffusers' scheduler seam): the timesteps it visits, from noisiest to cleanest,
/// and the update from x at <c>Timesteps[i]</c> to x at the next one, given the model's noise prediction.
/// </summary>
public interface ISampler
{
    /// <summary>The model timesteps visited, in order (e.g. 999, 998, …, 0).</summary>
    IReadOnlyList<int> Timesteps { get; }

    /// <summary>x at step <paramref name="index"/> + 1 from x at step <paramref name="index"/> and ε_θ(x, Timesteps[index]).</summary>
    Tensor Step(Tensor eps, int index, Tensor x, Generator? generator);
}
