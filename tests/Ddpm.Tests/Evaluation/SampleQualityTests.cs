using Ddpm.Evaluation;
using Xunit;
using static TorchSharp.torch;

namespace Ddpm.Tests.Evaluation;

public sealed class SampleQualityTests
{
    /// <summary>N one-hot (or softened) class probabilities with the given labels, and well-conditioned random 4-d
    /// features.</summary>
    private static ClassifierOutputs Outputs(int[] labels, double top)
    {
        int n = labels.Length;
        var p = full([n, 10], (1 - top) / 9, dtype: float64);
        for (int i = 0; i < n; i++) p[i, labels[i]] = tensor(top, dtype: float64);
        using var g = new Generator(1, new Device("cpu"));
        return new ClassifierOutputs(randn([n, 4], dtype: float64, generator: g), p);
    }

    private static FeatureStatistics Reference()
    {
        using var g = new Generator(2, new Device("cpu"));
        using var f = randn([200, 4], dtype: float64, generator: g);
        return FeatureStatistics.FromFeatures(f, "reference");
    }

    [Fact]
    public void Confident_balanced_predictions_score_the_maximum_inception_style_score_and_zero_class_kl()
    {
        using var outputs = Outputs(Enumerable.Range(0, 100).Select(i => i % 10).ToArray(), 1.0);
        using var reference = Reference();
        var q = SampleQuality.Measure(outputs, reference, "test");
        Assert.Equal(10.0, q.InceptionStyleScore, 1e-9);
        Assert.Equal(0.0, q.ClassKlFromUniform, 1e-12);
        Assert.Equal(1.0, q.Confidence);
        Assert.Equal(Enumerable.Repeat(10L, 10), q.ClassHistogram);
        Assert.Equal(100, q.Count);
    }

    [Fact]
    public void A_single_predicted_class_scores_one_and_ln_10()
    {
        using var outputs = Outputs(Enumerable.Repeat(3, 50).ToArray(), 1.0);
        using var reference = Reference();
        var q = SampleQuality.Measure(outputs, reference, "test");
        Assert.Equal(1.0, q.InceptionStyleScore, 1e-9);
        Assert.Equal(Math.Log(10), q.ClassKlFromUniform, 1e-12);
        Assert.Equal(50, q.ClassHistogram[3]);
    }

    [Fact]
    public void Confidence_counts_only_top_probabilities_at_or_above_the_threshold()
    {
        var labels = Enumerable.Range(0, 20).Select(i => i % 10).ToArray();
        using var unsure = Outputs(labels, 0.5);
        using var sure = Outputs(labels, 0.9);
        using var reference = Reference();
        Assert.Equal(0.0, SampleQuality.Measure(unsure, reference, "test").Confidence);
        Assert.Equal(1.0, SampleQuality.Measure(sure, reference, "test").Confidence);
        Assert.Equal(0.5, SampleQuality.Measure(unsure, reference, "test").MeanTopProbability, 1e-12);
    }
}
