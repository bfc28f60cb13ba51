using ScottPlot;

namespace Ddpm.Evaluation;

/// <summary>PNG charts of the evaluation (ScottPlot 5, rendered headless through SkiaSharp).</summary>
public static class Charts
{
    /// <summary>
    /// The training loss per step (thin), its moving average over ~1/50 of the run, and the per-epoch means (markers),
    /// as a PNG of <paramref name="width"/> × <paramref name="height"/> pixels.
    /// </summary>
    public static byte[] LossCurve(TrainingLog log, string title, int width = 900, int height = 500)
    {
        var plot = new Plot();
        if (log.Steps.Length > 0)
        {
            var raw = plot.Add.ScatterLine(log.Steps, log.Losses);
            raw.LineWidth = 1;
            raw.Color = Colors.SteelBlue.WithAlpha(0.35);
            raw.LegendText = "loss per step";
            int window = Math.Max(1, log.Steps.Length / 50);
            if (window > 1)
            {
                var smooth = MovingAverage(log.Losses, window);
                var line = plot.Add.ScatterLine(log.Steps.Skip(window - 1).ToArray(), smooth);
                line.LineWidth = 2;
                line.Color = Colors.Navy;
                line.LegendText = $"moving average ({window} steps)";
            }
        }
        if (log.EpochSteps.Length > 0)
        {
            var epochs = plot.Add.Scatter(log.EpochSteps, log.EpochMeanLosses);
            epochs.LineWidth = 0;
            epochs.MarkerSize = 9;
            epochs.Color = Colors.OrangeRed;
            epochs.LegendText = "epoch mean";
        }
        plot.Title(title);
        plot.XLabel("optimizer step");
        plot.YLabel("MSE(ε, ε_θ)");
        plot.ShowLegend(Alignment.UpperRight);
        return plot.GetImageBytes(width, height, ImageFormat.Png);
    }

    /// <summary>A bar chart of predicted-label counts with the uniform count N/10 as a dashed line.</summary>
    public static byte[] ClassHistogram(long[] counts, string title, int width = 700, int height = 450)
    {
        var plot = new Plot();
        var bars = plot.Add.Bars(counts.Select(c => (double)c).ToArray());
        bars.Color = Colors.SteelBlue;
        double uniform = counts.Sum() / (double)counts.Length;
        var line = plot.Add.HorizontalLine(uniform);
        line.LinePattern = LinePattern.Dashed;
        line.Color = Colors.OrangeRed;
        line.LegendText = $"uniform ({uniform:F1})";
        plot.Axes.Bottom.SetTicks(Enumerable.Range(0, counts.Length).Select(i => (double)i).ToArray(),
            Enumerable.Range(0, counts.Length).Select(i => i.ToString()).ToArray());
        plot.Axes.Margins(bottom: 0);
        plot.Title(title);
        plot.XLabel("predicted digit");
        plot.YLabel("samples");
        plot.ShowLegend(Alignment.UpperRight);
        return plot.GetImageBytes(width, height, ImageFormat.Png);
    }

    private static double[] MovingAverage(double[] values, int window)
    {
        var result = new double[values.Length - window + 1];
        double sum = values.Take(window).Sum();
        result[0] = sum / window;
        for (int i = window; i < values.Length; i++)
        {
            sum += values[i] - values[i - window];
            result[i - window + 1] = sum / window;
        }
        return result;
    }
}
