using Ddpm.Imaging;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>The images of a <see cref="GenerationRequest"/>, the timesteps they were sampled with, and how long it
/// took. Disposing frees the images.</summary>
/// <param name="Images">float32 [N, C, H, W] on the CPU, clamped to [−1, 1], in image-index order.</param>
/// <param name="FirstIndex">Index of the first image in the seed's sequence.</param>
/// <param name="Timesteps">The model timesteps every batch visited, in order.</param>
/// <param name="Timings">Wall-clock times.</param>
public sealed record GenerationResult(Tensor Images, long FirstIndex, IReadOnlyList<int> Timesteps, GenerationTimings Timings) : IDisposable
{
    public long Count => Images.shape[0];

    /// <summary>The images as uint8 [N, C, H, W] (256 levels, as a saved PNG or IDX file holds them).</summary>
    public Tensor ToBytes() => Pixels.ToBytes(Images);

    public void Dispose() => Images.Dispose();
}

/// <summary>
/// Wall-clock seconds of a generation: in all (until the images were on the CPU), and per step of every batch (steps ×
/// batches entries, the per-step callback excluded). On a GPU a step's time is the host's: kernels run asynchronously,
/// so single steps can read short or long while their sum and <see cref="TotalSeconds"/> are right.
/// </summary>
public sealed record GenerationTimings(double TotalSeconds, IReadOnlyList<double> StepSeconds)
{
    /// <summary>Total time per step (of one batch), in milliseconds.</summary>
    public double MillisecondsPerStep => StepSeconds.Count == 0 ? 0 : 1000 * TotalSeconds / StepSeconds.Count;
}
