using Ddpm.IO;
using Ddpm.Runs;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>An evaluation's report and what to write beside it. Disposing frees the images.</summary>
/// <param name="Report">Everything measured (its <c>Files</c> are left for the writer to fill in).</param>
/// <param name="Images">The evaluated images, float32 [N, 1, 28, 28] in [−1, 1] on the CPU.</param>
/// <param name="Sampled">Whether the images were sampled from the checkpoint (rather than read from an image
/// set).</param>
/// <param name="SampleGridPng">The first 100 images as a 10-wide grid.</param>
/// <param name="ClassHistogramPng">The classifier's predicted-class histogram.</param>
/// <param name="LossCurvePng">The training loss curve, when a training log lies beside the checkpoint.</param>
public sealed record EvaluationResult(EvaluationReport Report, Tensor Images, bool Sampled, byte[] SampleGridPng, byte[] ClassHistogramPng,
    byte[]? LossCurvePng) : IDisposable
{
    /// <summary>File names of an evaluation folder (the report itself is
    /// <see cref="RunFolder.EvaluationFile"/>).</summary>
    public const string SamplesIdxFile = "samples-idx3-ubyte", ClassHistogramFile = "class_histogram.png", LossCurveFile = "loss_curve.png";

    /// <summary>
    /// Writes the evaluation into <paramref name="folder"/> (created when missing): the sampled images as IDX, the
    /// sample grid, the class histogram, the loss curve and the report, each atomically. Returns the report as saved
    /// (with its files).
    /// </summary>
    public EvaluationReport SaveTo(string folder)
    {
        Directory.CreateDirectory(folder);
        var files = new List<string>();
        void Write(string name, Action<string> write)
        {
            var path = Path.Combine(folder, name);
            write(path);
            files.Add(path);
        }
        if (Sampled) Write(SamplesIdxFile, path => EvaluationImages.SaveIdx(Images, path));
        Write(SampleFolder.GridFile, path => AtomicFile.WriteAllBytes(path, SampleGridPng));
        Write(ClassHistogramFile, path => AtomicFile.WriteAllBytes(path, ClassHistogramPng));
        if (LossCurvePng is { } curve) Write(LossCurveFile, path => AtomicFile.WriteAllBytes(path, curve));
        var jsonPath = Path.Combine(folder, RunFolder.EvaluationFile);
        var report = Report with { Files = files.Append(jsonPath).ToList() };
        report.Save(jsonPath);
        return report;
    }

    public void Dispose() => Images.Dispose();
}

/// <summary>Progress of a phase of an evaluation ("sampling" or "bits/dim"): done of total units, and a short
/// description.</summary>
public sealed record EvaluationProgress(string Phase, long Done, long Total, string Detail);
