using System.Globalization;
using Ddpm.Data;

namespace Ddpm.Evaluation;

/// <summary>
/// The loss history <c>ddpm train</c> writes into its output folder: <c>loss.csv</c> (<c>step,loss</c>, one row per
/// optimizer step) and <c>train_log.csv</c> (<c>epoch,step,mean_loss,...</c>, one row per epoch). Either may be absent.
/// </summary>
public sealed record TrainingLog(double[] Steps, double[] Losses, double[] EpochSteps, double[] EpochMeanLosses)
{
    public const string StepFile = "loss.csv";
    public const string EpochFile = "train_log.csv";

    /// <summary>Reads both files from <paramref name="directory"/>; throws <see cref="DataException"/> when neither exists or a row is malformed.</summary>
    public static TrainingLog Read(string directory)
    {
        var stepPath = Path.Combine(directory, StepFile);
        var epochPath = Path.Combine(directory, EpochFile);
        if (!File.Exists(stepPath) && !File.Exists(epochPath))
            throw new DataException(directory, $"holds no training log ({StepFile} or {EpochFile} from 'ddpm train')");
        var (steps, losses) = File.Exists(stepPath) ? Columns(stepPath, "step", "loss") : ([], []);
        var (epochSteps, means) = File.Exists(epochPath) ? Columns(epochPath, "step", "mean_loss") : ([], []);
        return new TrainingLog(steps, losses, epochSteps, means);
    }

    private static (double[] X, double[] Y) Columns(string path, string xName, string yName)
    {
        var lines = File.ReadAllLines(path);
        if (lines.Length == 0) return ([], []);
        var header = lines[0].Split(',').Select(h => h.Trim()).ToList();
        int xi = header.IndexOf(xName), yi = header.IndexOf(yName);
        if (xi < 0 || yi < 0) throw new DataException(path, $"header '{lines[0]}' lacks the columns '{xName}' and '{yName}'");
        var xs = new List<double>();
        var ys = new List<double>();
        for (int i = 1; i < lines.Length; i++)
        {
            if (string.IsNullOrWhiteSpace(lines[i]) || lines[i] == lines[0]) continue; // resumed runs may repeat nothing, but be lenient
            var cells = lines[i].Split(',');
            if (cells.Length <= Math.Max(xi, yi)
                || !double.TryParse(cells[xi], NumberStyles.Float, CultureInfo.InvariantCulture, out var x)
                || !double.TryParse(cells[yi], NumberStyles.Float, CultureInfo.InvariantCulture, out var y))
                throw new DataException(path, $"line {i + 1} ('{lines[i]}') is not a row of numbers under '{lines[0]}'");
            xs.Add(x);
            ys.Add(y);
        }
        return (xs.ToArray(), ys.ToArray());
    }
}
