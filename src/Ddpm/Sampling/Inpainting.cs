using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// Inpainting (RePaint, Lugmayr et al. 2022): complete <see cref="Known"/> where <see cref="Mask"/> is 0, keeping it
/// where the mask is 1. After every sampler step the kept region is replaced by the known image at the step's noise
/// level, x = m ⊙ x_known,t + (1 − m) ⊙ x (RePaint §4.1, eqs. 8–10), and after the last step by the known image itself.
/// Image i of the request completes input i mod M. The tensors stay the caller's.
/// </summary>
public sealed record Inpainting
{
    /// <summary>The known images, float32 [M, C, H, W] in [−1, 1] (M ≥ 1); only the kept pixels matter.</summary>
    public required Tensor Known { get; init; }

    /// <summary>1 = keep, 0 = inpaint: float32 [1 or M, 1, H, W] holding only 0 and 1 (one mask for all inputs, or one
    /// each).</summary>
    public required Tensor Mask { get; init; }

    /// <summary>
    /// RePaint's r ≥ 1: each stretch of <see cref="JumpLength"/> steps is walked r times, going back up by the forward
    /// process between walks (<see cref="RePaintSchedule"/>). 1 = plain replacement. Needs a single-step sampler
    /// (<see cref="SamplerOptions.IsSingleStep"/>).
    /// </summary>
    public int Resamplings { get; init; } = 1;

    /// <summary>RePaint's jump length j ≥ 1, in steps of the sampler's grid (used when <see cref="Resamplings"/> &gt;
    /// 1; below the grid's S steps).</summary>
    public int JumpLength { get; init; } = 10;

    /// <summary>
    /// Accept a mask that keeps every pixel (the output is the input) or none (the output is plain sampling). Off, the
    /// default, <see cref="ImageGenerator.Plan"/> refuses both as the user's mistake.
    /// </summary>
    public bool AllowTrivialMask { get; init; }
}
