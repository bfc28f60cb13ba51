using System.Globalization;
using Ddpm.Diffusion;

namespace Ddpm.Evaluation;

/// <summary>The human-readable tables of an evaluation report and of the metric anchors (what <c>ddpm eval</c>
/// prints).</summary>
public static class EvaluationText
{
    public const string NotInceptionNote =
        "note: 'FD (classifier)' is a Fréchet distance in the MNIST classifier's 84-d feature space, NOT Inception-FID; " +
        "it is not comparable to published FID numbers.";

    private static readonly string Header = $"  {"set",-34} {"N",7} {"FD (clf)",12} {"conf≥0.9",10} {"class KL",10} {"IS-style",9}";

    private static string Row(string name, SampleQuality q) => string.Create(CultureInfo.InvariantCulture,
        $"  {name,-34} {q.Count,7} {q.FrechetDistance,12:F3} {100 * q.Confidence,9:F1}% {q.ClassKlFromUniform,10:F4} {q.InceptionStyleScore,9:F3}");

    /// <summary>The anchors' table (floor and ceiling of the metrics).</summary>
    public static IEnumerable<string> Anchors(QualityAnchors a) =>
        ["anchors (cached beside the classifier):", Header, Row("floor: real test vs train", a.Floor), Row("ceiling: Gaussian noise vs test", a.Ceiling),
            NotInceptionNote];

    /// <summary>The classifier at <paramref name="weightsPath"/> in one line: its test accuracy and how it was
    /// trained.</summary>
    public static string Classifier(string weightsPath, ClassifierInfo info) => string.Create(CultureInfo.InvariantCulture,
        $"classifier {weightsPath}: test accuracy {100 * info.TestAccuracy:F2}% ({info.TestImages:N0} images), " +
        $"{info.Epochs} epochs on {info.TrainImages:N0} images in {info.TrainSeconds:F1} s, seed {info.Seed}");

    /// <summary>The report as the lines <c>ddpm eval</c> prints.</summary>
    public static IEnumerable<string> Report(EvaluationReport r)
    {
        var inv = CultureInfo.InvariantCulture;
        yield return "";
        yield return r.Checkpoint is not null
            ? $"ddpm eval: {r.Checkpoint} (epoch {r.CheckpointEpoch}, step {r.CheckpointStep}), {r.ImagesSource}, seed {r.Seed}"
            : $"ddpm eval: {r.ImagesSource}";
        if (r.Sampler is { } sm)
            yield return $"sampler: {sm.Name}, σ² = {(sm.Variance == VarianceKind.Beta ? "β_t" : "β̃_t")}, clip x0 {sm.ClipX0}, {sm.Steps} steps";
        if (r.ClassAgreement is { } agree)
            yield return string.Create(inv, $"class agreement (classifier's label = requested class): {100 * agree:F1}%");
        yield return string.Create(inv, $"classifier: {r.ClassifierPath}, test accuracy {100 * r.Classifier!.TestAccuracy:F2}%");
        yield return "";
        yield return "sample quality (MNIST classifier; Fréchet distance vs the MNIST test set's feature statistics):";
        yield return Header;
        yield return Row("evaluated images", r.Quality!);
        yield return Row("real training images, same N", r.RealAtSameN!);
        yield return Row("anchor floor: 10k real test vs train", r.Anchors!.Floor);
        yield return Row("anchor ceiling: Gaussian noise", r.Anchors.Ceiling);
        yield return $"  predicted-class histogram: {string.Join(" ", r.Quality!.ClassHistogram.Select((c, i) => $"{i}:{c}"))}";
        yield return string.Create(inv,
            $"  mean top probability {r.Quality.MeanTopProbability:F3}; class KL from uniform in nats (0 = balanced, ln 10 = 2.303 = one class)");
        yield return NotInceptionNote;
        if (r.Nll is { } b)
        {
            yield return "";
            yield return $"negative log-likelihood bound on {r.NllData} ({b.Method.ToString().ToLowerInvariant()}, " +
                (b.Method == NllMethod.Exact ? $"all {b.Timesteps} terms" : $"{b.KlTermsEvaluated} of {b.Timesteps - 1} KL terms per image") + "):";
            var subsetError = b.Method == NllMethod.Estimate ? string.Format(inv, "  ± {0:F4} (timestep subset)", b.TimestepStdErr) : "";
            yield return string.Format(inv, "  total              {0,9:F4} bits/dim  ± {1:F4} (images){2}", b.Total, b.ImageStdErr, subsetError);
            yield return string.Create(inv, $"  prior L_T          {b.Prior,9:F5}");
            yield return string.Create(inv, $"  KL terms Σ L_t-1   {b.Kl,9:F4}");
            yield return string.Create(inv, $"  decoder L_0        {b.Decoder,9:F4}");
        }
        yield return "";
        var t = r.Timings;
        yield return string.Create(inv,
            $"time: setup {t.Setup:F1} s, sampling {t.Sampling:F1} s, metrics {t.Metrics:F1} s, bits/dim {t.Nll:F1} s, total {t.Total:F1} s");
        yield return "files: " + string.Join(", ", r.Files);
    }
}
