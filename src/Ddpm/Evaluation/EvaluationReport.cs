using System.Text.Json;
using Ddpm.IO;

namespace Ddpm.Evaluation;

/// <summary>Everything <c>ddpm eval</c> measured and how, as written to <c>eval.json</c>.</summary>
public sealed record EvaluationReport
{
    public const string FeatureSpaceNote =
        "frechet_distance is computed on the MNIST classifier's penultimate-layer (84-d) features: it is NOT Inception-FID " +
        "and is not comparable to published FID numbers.";

    public string Note { get; init; } = FeatureSpaceNote;
    public DateTimeOffset CreatedAt { get; init; } = DateTimeOffset.UtcNow;
    /// <summary>The checkpoint path, or null when only an image set was evaluated.</summary>
    public string? Checkpoint { get; init; }
    public long? CheckpointStep { get; init; }
    public int? CheckpointEpoch { get; init; }
    /// <summary>The checkpoint's full config as YAML.</summary>
    public string? ConfigYaml { get; init; }
    /// <summary>Where the evaluated images came from: "sampled from the checkpoint" or the --images path.</summary>
    public string ImagesSource { get; init; } = "";
    public SamplerSettings? Sampler { get; init; }
    /// <summary>Class-conditional sampling with guidance: the share of samples the classifier assigns to the requested
    /// class.</summary>
    public double? ClassAgreement { get; init; }
    public long Num { get; init; }
    public long Seed { get; init; }
    public string Device { get; init; } = "cpu";
    public string ClassifierPath { get; init; } = "";
    public ClassifierInfo? Classifier { get; init; }
    /// <summary>The evaluated images against the MNIST test set's statistics.</summary>
    public SampleQuality? Quality { get; init; }
    /// <summary>The same number N of random real training images against the test set: the floor at this N (FD is
    /// biased upwards at small N).</summary>
    public SampleQuality? RealAtSameN { get; init; }
    public QualityAnchors? Anchors { get; init; }
    public BitsPerDim? Nll { get; init; }
    /// <summary>The images the likelihood was measured on.</summary>
    public string? NllData { get; init; }
    public EvaluationTimings Timings { get; init; } = new();
    public IReadOnlyList<string> Files { get; init; } = [];

    public byte[] ToJsonBytes() => JsonSerializer.SerializeToUtf8Bytes(this, EvaluationJson.Options);

    public void Save(string path) => AtomicFile.WriteAllBytes(path, ToJsonBytes());
}
