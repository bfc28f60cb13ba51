using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>
/// Sample-quality numbers for a set of N images, all measured with the MNIST classifier. <see cref="FrechetDistance"/>:
/// d² between Gaussians fitted to classifier features of this set and of the reference set (the MNIST test set unless
/// stated) — classifier-space, NOT Inception-FID. <see cref="Confidence"/>: share of images with max_y p(y|x) ≥ the
/// threshold (0.9). <see cref="ClassHistogram"/>: counts of arg-max labels; <see cref="ClassKlFromUniform"/> = Σ_y
/// p̂(y) ln(10 p̂(y)) in nats. <see cref="InceptionStyleScore"/> = exp(E_x KL(p(y|x) ‖ p(y))), p(y) = E_x p(y|x)
/// (Salimans et al. 2016, with this classifier; 1..10).
/// </summary>
public sealed record SampleQuality
{
    public long Count { get; init; }
    public double FrechetDistance { get; init; }
    public double ConfidenceThreshold { get; init; }
    public double Confidence { get; init; }
    public double MeanTopProbability { get; init; }
    public long[] ClassHistogram { get; init; } = [];
    public double ClassKlFromUniform { get; init; }
    public double InceptionStyleScore { get; init; }

    /// <summary>Measures <paramref name="outputs"/> against the reference feature statistics. <paramref name="source"/>
    /// names the set in errors.</summary>
    public static SampleQuality Measure(ClassifierOutputs outputs, FeatureStatistics reference, string source, double confidenceThreshold = 0.9)
    {
        using var stats = FeatureStatistics.FromFeatures(outputs.Features, source);
        using var scope = NewDisposeScope();
        var p = outputs.Probabilities;
        long n = p.shape[0], k = p.shape[1];
        var top = p.max(1).values;
        var labels = p.argmax(1);
        var histogram = bincount(labels, minlength: k).to(int64);
        var counts = histogram.data<long>().ToArray();
        double kl = 0;
        foreach (var c in counts)
            if (c > 0) kl += (double)c / n * Math.Log((double)c / n * k);
        var marginal = p.mean([0], keepdim: true);
        // KL(p(y|x) ‖ p(y)) per image; the clamp makes 0·ln 0 = 0.
        var klPerImage = (p * (p.clamp_min(1e-300).log() - marginal.clamp_min(1e-300).log())).sum(1);
        return new SampleQuality
        {
            Count = n,
            FrechetDistance = Evaluation.FrechetDistance.Compute(stats, reference),
            ConfidenceThreshold = confidenceThreshold,
            Confidence = top.ge(confidenceThreshold).to(float64).mean().item<double>(),
            MeanTopProbability = top.mean().item<double>(),
            ClassHistogram = counts,
            ClassKlFromUniform = kl,
            InceptionStyleScore = Math.Exp(klPerImage.mean().item<double>()),
        };
    }
}
