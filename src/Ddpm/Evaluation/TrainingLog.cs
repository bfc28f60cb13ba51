using System.Globalization;
using Ddpm.Data;
using Ddpm.Runs;

namespace Ddpm.Evaluation;

/// <summary>
/// The loss history <c>ddpm train</c> writes into its run folder (<see cref="RunFolder"/>): the step log
/// (<c>step,loss</c>, one row per optimizer step) and the epoch log (<c>epoch,step,mean_loss,...</c>, one row per
/// epoch). Either may be absent.
/// </summary>
public sealed record TrainingLog(double[] Steps, double[] Losses, double[] EpochSteps, double[] EpochMeanLosses)
{
    /// <summary>Whether <paramref name="folder"/> holds either log.</summary>
    public static bool Exists(RunFolder folder) => File.Exists(folder.StepLogPath) || File.Exists(folder.EpochLogPath);

    /// <summary>Reads both logs of <paramref name="folder"/>; throws <see cref="DataException"/> when neither exists or
    /// a row is malformed.</summary>
    public static TrainingLog Read(RunFolder folder)
    {
        var (stepPath, epochPath) = (folder.StepLogPath, folder.EpochLogPath);
        if (!Exists(folder))
            throw new DataException(folder.Path, $"holds no training log ({RunFolder.StepLogFile} or {RunFolder.EpochLogFile} from 'ddpm train')");
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
