using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// One reverse-process scheme (diffusers' scheduler seam): the timesteps it visits, from noisiest to cleanest,
/// and the update from x at <c>Timesteps[i]</c> to x at the next one, given the model's noise prediction.
/// The caller supplies the step's Gaussian noise (diffusers' <c>variance_noise</c>), so where noise comes from
/// (one generator, or one stream per image) is not the sampler's business.
/// </summary>
public interface ISampler
{
    /// <summary>The model timesteps visited, in order (e.g. 999, 998, …, 0).</summary>
    IReadOnlyList<int> Timesteps { get; }

    /// <summary>
    /// x at step <paramref name="index"/> + 1 from x at step <paramref name="index"/> and ε_θ(x, Timesteps[index]).
    /// <paramref name="noise"/>: z ~ N(0, I) shaped like x when <see cref="UsesNoise"/>(index), else ignored (may be
    /// null).
    /// </summary>
    Tensor Step(Tensor eps, int index, Tensor x, Tensor? noise);

    /// <summary>Whether step <paramref name="index"/> adds noise, i.e. needs z (deterministic steps say false, so none
    /// is drawn).</summary>
    bool UsesNoise(int index) => true;
}
