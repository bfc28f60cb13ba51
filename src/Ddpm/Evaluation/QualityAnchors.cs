using Ddpm.Data;
using Ddpm.Imaging;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>
/// Reference points for <see cref="SampleQuality"/>, cached in <c>anchors.json</c> beside the classifier. Floor: the
/// 10,000 real MNIST test images measured against the training set's feature statistics (what perfect samples would
/// score). Ceiling: as many images of Gaussian noise (pixels N(0, 1), clamped and quantized) against the test set (what
/// failure scores).
/// </summary>
public sealed record QualityAnchors
{
    public string FloorDescription { get; init; } = "";
    public SampleQuality Floor { get; init; } = new();
    public string CeilingDescription { get; init; } = "";
    public SampleQuality Ceiling { get; init; } = new();
    /// <summary>The classifier's <see cref="ClassifierInfo.TrainedAt"/>: anchors belong to one set of
    /// weights.</summary>
    public DateTimeOffset ClassifierTrainedAt { get; init; }
    public long Seed { get; init; }

    /// <summary>Computes both anchors from the labelled MNIST training and test sets (a few tens of seconds on a
    /// CPU).</summary>
    public static QualityAnchors Compute(MnistClassifier classifier, ClassifierInfo info, ImageDataset train, ImageDataset test,
        long seed = 0, Action<string>? log = null)
    {
        log?.Invoke($"computing quality anchors (once): features of {train.Count:N0} training and {test.Count:N0} test images");
        using var trainOut = classifier.Embed(train.Images);
        using var trainStats = FeatureStatistics.FromFeatures(trainOut.Features, train.Description);
        using var testOut = classifier.Embed(test.Images);
        using var testStats = FeatureStatistics.FromFeatures(testOut.Features, test.Description);
        var floor = SampleQuality.Measure(testOut, trainStats, test.Description);
        SampleQuality ceiling;
        using (var g = new Generator((ulong)seed, new Device("cpu")))
        using (var noise = Pixels.Quantize(randn([test.Count, 1, 28, 28], generator: g)))
        using (var noiseOut = classifier.Embed(noise))
            ceiling = SampleQuality.Measure(noiseOut, testStats, "Gaussian noise images");
        return new QualityAnchors
        {
            FloorDescription = $"{test.Count:N0} real MNIST test images vs MNIST training-set statistics",
            Floor = floor,
            CeilingDescription = $"{test.Count:N0} Gaussian-noise images (N(0,1) pixels, clamped to [-1,1]) vs MNIST test-set statistics",
            Ceiling = ceiling,
            ClassifierTrainedAt = info.TrainedAt,
            Seed = seed,
        };
    }
}
