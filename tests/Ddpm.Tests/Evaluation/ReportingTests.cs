using System.Text.Json;
using Ddpm.Data;
using Ddpm.Imaging;
using Ddpm.Evaluation;
using Xunit;
using static TorchSharp.torch;

namespace Ddpm.Tests.Evaluation;

public sealed class ReportingTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ddpm-eval-report-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static bool IsPng(byte[] bytes) => bytes.Length > 8 && bytes[0] == 0x89 && bytes[1] == (byte)'P' && bytes[2] == (byte)'N' && bytes[3] == (byte)'G';

    [Fact]
    public void The_training_log_is_read_and_drawn_as_a_png_loss_curve()
    {
        File.WriteAllLines(Path.Combine(_dir, "loss.csv"), ["step,loss", .. Enumerable.Range(1, 200).Select(i => $"{i},{1.0 / i + 0.05}")]);
        File.WriteAllLines(Path.Combine(_dir, "train_log.csv"), ["epoch,step,mean_loss,seconds,images_per_s,rss_start_mb,rss_end_mb", "1,100,0.2,1,1,1,1", "2,200,0.1,1,1,1,1"]);
        var log = TrainingLog.Read(new Ddpm.Runs.RunFolder(_dir));
        Assert.Equal(200, log.Steps.Length);
        Assert.Equal(new[] { 100.0, 200.0 }, log.EpochSteps);
        Assert.True(IsPng(Charts.LossCurve(log, "loss")));
        Assert.True(IsPng(Charts.ClassHistogram([5, 3, 0, 1, 9, 2, 2, 4, 4, 0], "classes")));
    }

    [Fact]
    public void A_folder_without_a_log_or_with_a_malformed_row_is_a_data_error()
    {
        Assert.Throws<DataException>(() => TrainingLog.Read(new Ddpm.Runs.RunFolder(_dir)));
        File.WriteAllLines(Path.Combine(_dir, "loss.csv"), ["step,loss", "1,0.5", "2,oops"]);
        var e = Assert.Throws<DataException>(() => TrainingLog.Read(new Ddpm.Runs.RunFolder(_dir)));
        Assert.Contains("line 3", e.Message);
    }

    [Fact]
    public void Image_sets_round_trip_through_idx_and_wrong_sizes_or_channels_are_refused()
    {
        using var images = rand(90, 1, 28, 28) * 2 - 1;
        var idx = Path.Combine(_dir, "s-idx3-ubyte");
        EvaluationImages.SaveIdx(images, idx);
        using (var back = EvaluationImages.Load(idx))
        {
            Assert.Equal(new long[] { 90, 1, 28, 28 }, back.Images.shape);
            using var all = back.Batch(arange(90, dtype: int64));
            using var q = Pixels.Quantize(images);
            Assert.True(all.allclose(q, atol: 1e-6));
        }
        EvaluationImages.SaveIdx(zeros(3, 1, 32, 32), idx);
        Assert.Contains("32×32", Assert.Throws<DataException>(() => EvaluationImages.Load(idx)).Message);

        var folder = Directory.CreateDirectory(Path.Combine(_dir, "rgb")).FullName;
        Ddpm.Tests.Data.TestImages.Solid(Path.Combine(folder, "a.png"), 28, 28, new SkiaSharp.SKColor(200, 10, 10));
        Assert.Contains("color", Assert.Throws<DataException>(() => EvaluationImages.Load(folder)).Message);
    }

    [Fact]
    public void The_report_serialises_every_number_with_snake_case_keys()
    {
        var report = new EvaluationReport
        {
            Num = 500, Seed = 3, Quality = new SampleQuality { FrechetDistance = 1.5, ClassHistogram = [1, 2] },
            Nll = new BitsPerDim { Method = NllMethod.Estimate, Total = 1.2, TimestepStdErr = 0.01 },
        };
        using var doc = JsonDocument.Parse(report.ToJsonBytes());
        Assert.Equal(1.5, doc.RootElement.GetProperty("quality").GetProperty("frechet_distance").GetDouble());
        Assert.Equal("estimate", doc.RootElement.GetProperty("nll").GetProperty("method").GetString());
        Assert.Contains("NOT Inception-FID", doc.RootElement.GetProperty("note").GetString());
    }
}
