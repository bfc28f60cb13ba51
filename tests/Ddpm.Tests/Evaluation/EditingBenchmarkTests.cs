using Ddpm.Configuration;
using Ddpm.Evaluation;
using Ddpm.Imaging;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Tests.Data;
using Ddpm.Tests.Models;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Evaluation;

/// <summary>
/// <see cref="EditingBenchmark"/> on a tiny untrained 28×28 checkpoint, square "digits" and an untrained classifier
/// (MNIST is not part of a fresh clone): the rows it makes, and the numbers of the rows without sampling recomputed
/// here.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Slow)]
public sealed class EditingBenchmarkTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    [Fact]
    public void The_table_has_every_row_and_measures_the_unedited_and_masked_digits_as_recomputed_here()
    {
        using var scope = NewDisposeScope();
        var config = new DdpmConfig
        {
            Diffusion = new DiffusionOptions { NumTimesteps = 10, BetaEnd = 0.2 },
            Model = TestModels.Tiny(28) with { NumHeads = 1 },
        }.Validate();
        using (var model = new UNet(config.Model)) Checkpoint.Save(_folder.File("tiny.ckpt"), model, config, epoch: 1, step: 1);
        using var classifier = new MnistClassifier();
        classifier.eval();
        using var train = SquareDigits.Make(200, 1);
        using var test = SquareDigits.Make(100, 2);
        var options = new EditingBenchmarkOptions
        {
            Checkpoint = _folder.File("tiny.ckpt"), Num = 90, BatchSize = 50, Resamplings = 2, JumpLength = 2, Strengths = [0.5],
            Sampler = new SamplerOptions { Kind = SamplerKind.Ddpm, Steps = 4 },
        };
        var rows = EditingBenchmark.Run(options, classifier, train, test);

        Assert.Equal(
        [
            ("unedited", "original test digits (ceiling)", 0),
            ("bottom half masked", "masked input, not completed (floor)", 0),
            ("bottom half masked", "replacement, ddpm (respaced, uniform), 4 steps", 4),
            ("bottom half masked", "replacement, ddpm (respaced, uniform), 6 steps", 6),
            ("bottom half masked", "RePaint r = 2, j = 2, ddpm (respaced, uniform), 4 steps", 6),
            ("right half masked", "masked input, not completed (floor)", 0),
            ("right half masked", "replacement, ddpm (respaced, uniform), 4 steps", 4),
            ("right half masked", "replacement, ddpm (respaced, uniform), 6 steps", 6),
            ("right half masked", "RePaint r = 2, j = 2, ddpm (respaced, uniform), 4 steps", 6),
            ("salt-and-pepper 0.2", "degraded input, not edited", 0),
            ("salt-and-pepper 0.2", "SDEdit s = 0.5, ddpm (respaced, uniform)", 2),
            ("blur σ 1.5", "degraded input, not edited", 0),
            ("blur σ 1.5", "SDEdit s = 0.5, ddpm (respaced, uniform)", 2),
        ], rows.Select(r => (r.Task, r.Method, r.ModelCalls)));
        Assert.All(rows.Where(r => r.ModelCalls > 0), r => Assert.True(r.SecondsPerImage > 0 && r.CpuSecondsPerImage > 0));

        // The rows without sampling, recomputed: agreement with the labels and FD against the training set's features.
        var digits = test.Images.narrow(0, 0, 90).to(float32) / 127.5 - 1;
        var labels = test.Labels!.narrow(0, 0, 90);
        var masked = digits.clone();
        masked[.., .., 14.., ..] = -1;
        using var real = classifier.Embed(train.Images);
        using var reference = FeatureStatistics.FromFeatures(real.Features, "train");
        foreach (var (row, images) in new[] { (rows[0], digits), (rows[1], masked) })
        {
            using var outputs = classifier.Embed(Pixels.Quantize(images));
            double agreement = outputs.Probabilities.argmax(1).eq(labels).to(float64).mean().item<double>();
            using var stats = FeatureStatistics.FromFeatures(outputs.Features, "edited");
            Assert.Equal(agreement, row.LabelAgreement, 12);
            Assert.Equal(FrechetDistance.Compute(stats, reference), row.FrechetDistance, 6);
        }
        Assert.Throws<ArgumentException>(() => EditingBenchmark.Run(options with { Num = 84 }, classifier, train, test));
        Assert.Throws<ArgumentException>(() => EditingBenchmark.Run(options with { Num = 101 }, classifier, train, test));
        // Without a cached classifier the run stops before any work, naming the folder.
        var empty = Directory.CreateDirectory(_folder.File("no-classifier")).FullName;
        var e = Assert.Throws<Ddpm.Data.DataException>(() => EditingBenchmark.Run(options with { DataDir = empty }));
        Assert.Contains("holds no trained classifier", e.Message);
    }

    [Fact]
    public void Salt_and_pepper_flips_about_p_of_the_pixels_to_black_or_white_and_blur_keeps_the_ink()
    {
        using var scope = NewDisposeScope();
        var images = zeros(50, 1, 28, 28); // mid-gray: every flipped pixel shows
        var noisy = EditingBenchmark.SaltAndPepper(images, 0.2, seed: 3);
        var changed = noisy.ne(images);
        double share = changed.to(float64).mean().item<double>();
        Assert.InRange(share, 0.2 - 0.01, 0.2 + 0.01); // 39,200 pixels: standard error 0.002
        Assert.True(noisy.masked_select(changed).abs().eq(1).all().item<bool>());
        Assert.True(noisy.eq(EditingBenchmark.SaltAndPepper(images, 0.2, seed: 3)).all().item<bool>());
        Assert.False(noisy.eq(EditingBenchmark.SaltAndPepper(images, 0.2, seed: 4)).all().item<bool>());

        // One white pixel far from the edges: blurred, its ink (x + 1) is spread but kept, and peaks where it was.
        var dot = -ones(1, 1, 28, 28);
        dot[0, 0, 14, 14] = 1;
        var blurred = EditingBenchmark.Blur(dot, 1.5);
        Assert.Equal(2.0, (blurred + 1).sum().item<float>(), 4);
        Assert.Equal(14 * 28 + 14, blurred.reshape(-1).argmax().item<long>());
        Assert.True(blurred[0, 0, 14, 14].item<float>() < 0, "a σ = 1.5 blur leaves under half of the ink in the centre");
        Assert.True(EditingBenchmark.Blur(-ones(1, 1, 28, 28), 1.5).eq(-1).all().item<bool>(), "black stays black");
    }
}
