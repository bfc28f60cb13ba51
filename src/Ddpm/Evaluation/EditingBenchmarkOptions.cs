using Ddpm.Sampling;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>What <see cref="EditingBenchmark"/> measures and how.</summary>
public sealed record EditingBenchmarkOptions
{
    /// <summary>A ddpm checkpoint of a 1-channel 28 × 28 model (EMA weights when it has them).</summary>
    public required string Checkpoint { get; init; }
    /// <summary>The MNIST folder holding the cached classifier (<see cref="ClassifierStore"/>), as ddpm eval.</summary>
    public string DataDir { get; init; } = "data/mnist";
    /// <summary>The first N MNIST test digits are edited.</summary>
    public int Num { get; init; } = 500;
    public long Seed { get; init; }
    /// <summary>
    /// The sampler of every edit: ancestral DDPM respaced to 25 steps (RePaint's resampling needs a single-step
    /// sampler, and the rows compare like with like).
    /// </summary>
    public SamplerOptions Sampler { get; init; } = new() { Kind = SamplerKind.Ddpm, Steps = 25 };
    /// <summary>
    /// Also plain replacement with as many steps as RePaint makes model calls (at most T): the control that tells
    /// resampling's gain from that of more model calls.
    /// </summary>
    public bool MatchedControl { get; init; } = true;
    public int Resamplings { get; init; } = 4;
    public int JumpLength { get; init; } = 3;
    public IReadOnlyList<double> Strengths { get; init; } = [0.15, 0.3, 0.5, 0.7];
    /// <summary>Salt-and-pepper noise: the share of pixels set to black or white (half each).</summary>
    public double SaltAndPepper { get; init; } = 0.2;
    /// <summary>Gaussian blur's σ in pixels (a 7 × 7 kernel).</summary>
    public double BlurSigma { get; init; } = 1.5;
    public int BatchSize { get; init; } = 100;
    public Device? Device { get; init; }
}
