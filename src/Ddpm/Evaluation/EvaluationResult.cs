using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>An evaluation's report and what to write beside it. Disposing frees the images.</summary>
/// <param name="Report">Everything measured (its <c>Files</c> are left for the writer to fill in).</param>
/// <param name="Images">The evaluated images, float32 [N, 1, 28, 28] in [−1, 1] on the CPU.</param>
/// <param name="Sampled">Whether the images were sampled from the checkpoint (rather than read from an image set).</param>
/// <param name="SampleGridPng">The first 100 images as a 10-wide grid.</param>
/// <param name="ClassHistogramPng">The classifier's predicted-class histogram.</param>
/// <param name="LossCurvePng">The training loss curve, when a training log lies beside the checkpoint.</param>
public sealed record EvaluationResult(EvaluationReport Report, Tensor Images, bool Sampled, byte[] SampleGridPng, byte[] ClassHistogramPng,
    byte[]? LossCurvePng) : IDisposable
{
    public void Dispose() => Images.Dispose();
}

/// <summary>Progress of a phase of an evaluation ("sampling" or "bits/dim"): done of total units, and a short description.</summary>
public sealed record EvaluationProgress(string Phase, long Done, long Total, string Detail);
