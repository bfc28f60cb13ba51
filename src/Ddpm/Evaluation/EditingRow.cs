namespace Ddpm.Evaluation;

/// <summary>One row of <see cref="EditingBenchmark"/>: which inputs, which method, and what came out.</summary>
/// <param name="Task">The inputs: "bottom half masked", "salt-and-pepper 0.2", "blur σ 1.5", "unedited" etc.</param>
/// <param name="Method">What was done to the inputs.</param>
/// <param name="LabelAgreement">Share of images the MNIST classifier assigns to the digit's true label.</param>
/// <param name="FrechetDistance">FD of the images' classifier features against the 60,000 training digits'.</param>
/// <param name="SecondsPerImage">Wall time of the edit per image (0 for rows that only measure inputs).</param>
/// <param name="CpuSecondsPerImage">
/// The process's CPU time (all threads) per image: on a shared machine a steadier cost than wall time.
/// </param>
/// <param name="ModelCalls">Model calls per image.</param>
public sealed record EditingRow(string Task, string Method, double LabelAgreement, double FrechetDistance,
    double SecondsPerImage, double CpuSecondsPerImage, int ModelCalls);
