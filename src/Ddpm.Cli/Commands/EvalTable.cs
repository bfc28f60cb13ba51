using System.Globalization;
using Ddpm.Evaluation;

namespace Ddpm.Cli.Commands;

/// <summary>The human-readable tables of <c>ddpm eval</c> and <c>ddpm classifier</c>.</summary>
internal static class EvalTable
{
    public const string NotInceptionNote =
        "note: 'FD (classifier)' is a Fréchet distance in the MNIST classifier's 84-d feature space, NOT Inception-FID; " +
        "it is not comparable to published FID numbers.";

    private static string Row(string name, SampleQuality q) => string.Create(CultureInfo.InvariantCulture,
        $"  {name,-34} {q.Count,7} {q.FrechetDistance,12:F3} {100 * q.Confidence,9:F1}% {q.ClassKlFromUniform,10:F4} {q.InceptionStyleScore,9:F3}");

    public static void PrintQualityHeader(TextWriter w)
    {
        w.WriteLine($"  {"set",-34} {"N",7} {"FD (clf)",12} {"conf≥0.9",10} {"class KL",10} {"IS-style",9}");
    }

    public static void PrintQualityRow(TextWriter w, string name, SampleQuality q) => w.WriteLine(Row(name, q));

    public static void PrintAnchors(TextWriter w, QualityAnchors a)
    {
        w.WriteLine("anchors (cached beside the classifier):");
        PrintQualityHeader(w);
        w.WriteLine(Row("floor: real test vs train", a.Floor));
        w.WriteLine(Row("ceiling: Gaussian noise vs test", a.Ceiling));
        w.WriteLine(NotInceptionNote);
    }

    public static string Histogram(long[] counts) => string.Join(" ", counts.Select((c, i) => $"{i}:{c}"));
}
