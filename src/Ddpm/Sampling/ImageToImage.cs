using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// Image-to-image by SDEdit (Meng et al. 2022, §3, Algorithm 1): noise the input to level t_0 = s·T by the forward
/// process, x_{t_0} ~ q(x_{t_0} | x_input) (DDPM eq. 4), and run the sampler from there. The start is the sampler's own
/// grid step with the largest timestep τ ≤ ⌈s·T⌉ − 1 (never noisier than asked); when that is the grid's first step,
/// the start is the chain's prior N(0, I), as in sampling, so s = 1 samples from noise and ignores the input (√ᾱ_{T−1}
/// weighs it by 0.0055 on the CPU preset anyway). Image i of the request starts from input i mod M. The tensor stays
/// the caller's.
/// </summary>
public sealed record ImageToImage
{
    /// <summary>The inputs, float32 [M, C, H, W] in [−1, 1] (M ≥ 1).</summary>
    public required Tensor Images { get; init; }

    /// <summary>SDEdit's strength s ∈ (0, 1]: how much of the chain is run again (small: close to the input).</summary>
    public double Strength { get; init; } = 0.5;

    /// <summary>The model timestep ⌈s·T⌉ − 1 that strength s asks for with T timesteps.</summary>
    public static int TargetTimestep(double strength, int numTimesteps) =>
        Math.Clamp((int)Math.Ceiling(strength * numTimesteps - 1e-9) - 1, 0, numTimesteps - 1);

    /// <summary>The index of the first step run on a grid of <paramref name="timesteps"/> (noisiest first; the last is
    /// 0).</summary>
    public static int StartIndex(double strength, IReadOnlyList<int> timesteps, int numTimesteps)
    {
        int target = TargetTimestep(strength, numTimesteps);
        for (int i = 0; i < timesteps.Count; i++)
            if (timesteps[i] <= target) return i;
        return timesteps.Count - 1;
    }
}
