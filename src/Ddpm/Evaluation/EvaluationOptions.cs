using Ddpm.Sampling;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>What <see cref="Evaluator"/> measures and how (the settings of <c>ddpm eval</c>).</summary>
public sealed record EvaluationOptions
{
    /// <summary>A ddpm checkpoint: its samples are evaluated (unless <see cref="Images"/> is given) and its likelihood
    /// measured.</summary>
    public string? Checkpoint { get; init; }
    /// <summary>An image folder or IDX file (1-channel 28 × 28) evaluated instead of samples.</summary>
    public string? Images { get; init; }
    /// <summary>Images to sample; must exceed the classifier's <see cref="MnistClassifier.FeatureDim"/> feature
    /// dimensions.</summary>
    public int Num { get; init; } = 500;
    /// <summary>Seed of the samples, of the likelihood's noise and timesteps, and of the real images compared at the
    /// same N.</summary>
    public long Seed { get; init; }
    public NllMethod Nll { get; init; } = NllMethod.Estimate;
    /// <summary>MNIST test images the likelihood is measured on (the first ones).</summary>
    public int NllImages { get; init; } = 100;
    /// <summary>K, the KL terms per image of <see cref="NllMethod.Estimate"/>.</summary>
    public int NllTimesteps { get; init; } = 20;
    /// <summary>Images per sampling and likelihood batch.</summary>
    public int BatchSize { get; init; } = 100;
    /// <summary>The sampler; its variance and x_0 clipping also define p_θ in the likelihood.</summary>
    public SamplerOptions Sampler { get; init; } = new();
    /// <summary>Class-conditional checkpoints: sample image i as class i mod num_classes with this guidance weight, and
    /// report class agreement.</summary>
    public double? Guidance { get; init; }
    /// <summary>Use the checkpoint's EMA weights when it has them.</summary>
    public bool UseEma { get; init; } = true;
    /// <summary>The MNIST folder, where the classifier and its anchors are cached.</summary>
    public string DataDir { get; init; } = "data/mnist";
    /// <summary>Where the model runs (default CPU); the classifier and the metrics run on the CPU.</summary>
    public Device? Device { get; init; }

    /// <summary>Checks the settings on their own (before anything is read); <see cref="ArgumentException"/> names the
    /// bad one.</summary>
    public void Validate()
    {
        if (Checkpoint is null && Images is null)
            throw new ArgumentException("give a checkpoint (to sample from it) or an image set (a folder or IDX file), or both");
        if (Images is null && Num <= MnistClassifier.FeatureDim)
            throw new ArgumentException($"num {Num} is not more than the classifier's {MnistClassifier.FeatureDim} feature dimensions: the feature " +
                $"covariance would be singular. Sample {MnistClassifier.FeatureDim + 1} or more (1000+ for a stable Fréchet distance).");
        if (NllImages < 1) throw new ArgumentException($"nll-images must be >= 1, got {NllImages}");
        if (BatchSize < 1) throw new ArgumentException($"batch-size must be >= 1, got {BatchSize}");
        if (Nll == NllMethod.Estimate && NllTimesteps < 2) throw new ArgumentException($"nll-timesteps must be >= 2, got {NllTimesteps}");
    }
}
