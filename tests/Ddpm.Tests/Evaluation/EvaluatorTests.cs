using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Evaluation;
using Ddpm.Imaging;
using Ddpm.Interop;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Tests.Data;
using Ddpm.Tests.Models;
using Ddpm.Training;
using SkiaSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Evaluation;

/// <summary>
/// <see cref="Evaluator"/> end to end on a tiny 28×28 checkpoint against a reference made of square "digits" and an
/// untrained classifier (MNIST is not part of a fresh clone): the numbers are recomputed independently here.
/// </summary>
public sealed class EvaluatorTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    private string SaveCheckpoint(int classes)
    {
        var config = new DdpmConfig
        {
            Diffusion = new DiffusionOptions { NumTimesteps = 10, BetaEnd = 0.2 },
            Model = TestModels.Tiny(28) with { NumClasses = classes, NumHeads = 1 }, // one head: attention at 28×28 dominates the cost
        }.Validate();
        using var model = new UNet(config.Model);
        var path = _folder.File($"tiny-{classes}.ckpt");
        Checkpoint.Save(path, model, config, epoch: 2, step: 7);
        return path;
    }

    /// <summary>Square "digits" and an untrained classifier (also the sharded evaluation test's reference).</summary>
    internal static EvaluationReference Reference()
    {
        var classifier = new MnistClassifier();
        classifier.eval();
        var train = SquareDigits.Make(200, 1);
        var test = SquareDigits.Make(120, 2);
        var info = new ClassifierInfo { TestImages = test.Count, TrainImages = train.Count };
        return new EvaluationReference(classifier, info, "untrained", train, test, QualityAnchors.Compute(classifier, info, train, test));
    }

    [Trait(TestCategory.Name, TestCategory.Slow)]
    [Fact]
    public void Sampling_a_conditional_checkpoint_measures_quality_agreement_and_the_bound_of_the_pipelines_images()
    {
        using var scope = NewDisposeScope();
        var path = SaveCheckpoint(classes: 10);
        var options = new EvaluationOptions
        {
            Checkpoint = path, Num = 85, BatchSize = 40, Seed = 5, Guidance = 1.0, NllImages = 12, NllTimesteps = 3,
            Sampler = new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 2 },
        };
        using var reference = Reference();
        var logged = new List<string>();
        var phases = new List<string>();
        using var evaluator = Evaluator.Open(options);
        using var result = evaluator.Run(reference, logged.Add, p => phases.Add(p.Phase));
        var report = result.Report;

        // The images are the pipeline's for the same request (image i asks for class i mod 10): images [80, 85), the
        // last batch of 40, requested alone come out the same bit for bit.
        Assert.True(result.Sampled);
        using var generator = ImageGenerator.Load(path);
        int[] labels = Enumerable.Range(0, 85).Select(i => i % 10).ToArray();
        using var last = generator.Generate(new GenerationRequest
        {
            FirstIndex = 80, Count = 5, Seed = 5, Labels = labels[80..], Guidance = 1.0, MaxBatchSize = 40, Sampler = options.Sampler,
        });
        Assert.True(result.Images.narrow(0, 80, 5).eq(last.Images).all().item<bool>(), "the evaluator's samples are not the pipeline's");

        // Quality and agreement, recomputed from the quantized images.
        using var outputs = reference.Classifier.Embed(Pixels.Quantize(result.Images));
        var quality = SampleQuality.Measure(outputs, reference.TestStatistics, "recomputed");
        double agreement = outputs.Probabilities.argmax(1).eq(tensor(labels.Select(y => (long)y).ToArray())).to(float64).mean().item<double>();
        Assert.Equal(85, report.Num);
        Assert.Equal(quality.FrechetDistance, report.Quality!.FrechetDistance, 9);
        Assert.Equal(quality.ClassHistogram, report.Quality.ClassHistogram);
        Assert.Equal(agreement, report.ClassAgreement!.Value, 12);
        Assert.Equal(85, report.RealAtSameN!.Count);
        Assert.Equal(7, report.CheckpointStep);
        Assert.Equal(2, report.Sampler!.Steps);
        Assert.Equal("ddim (eta 0, uniform), guidance w = 1, classes i mod 10", report.Sampler.Name);

        // The bound: K = 3 of T − 1 = 9 KL terms on the first 12 test images, as VariationalBound computes it.
        var nll = report.Nll!;
        Assert.Equal((NllMethod.Estimate, 12L, 3), (nll.Method, nll.Images, nll.KlTermsEvaluated));
        var batches = new List<Tensor>();
        for (int start = 0; start < 12; start += 40) batches.Add(reference.Test.Batch(arange(start, 12, dtype: int64)));
        var bound = new VariationalBound(generator.Diffusion).Estimate(generator.EpsPredictor, batches, 3, seed: 5);
        Assert.Equal(bound.Total, nll.Total, 9);
        Assert.Equal("the first 12 MNIST test images", report.NllData);

        // Files to write: a 10-wide grid of the first 85 images, a histogram; no loss curve without a training log.
        using (var grid = SKBitmap.Decode(result.SampleGridPng)) Assert.Equal((10 * 30 + 2, 9 * 30 + 2), (grid.Width, grid.Height));
        Assert.NotNull(SKBitmap.Decode(result.ClassHistogramPng));
        Assert.Null(result.LossCurvePng);
        Assert.Contains(logged, l => l.Contains("no training log"));
        Assert.Equal(["sampling", "bits/dim"], phases.Distinct());
    }

    [Fact]
    public void An_image_set_is_measured_as_read_and_equals_the_same_images_sampled()
    {
        using var scope = NewDisposeScope();
        var path = SaveCheckpoint(classes: 0);
        using var reference = Reference();
        EvaluationResult sampled;
        using (var evaluator = Evaluator.Open(new EvaluationOptions { Checkpoint = path, Num = 85, Nll = NllMethod.None, Sampler = new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 2 } }))
            sampled = evaluator.Run(reference);
        using (sampled)
        {
            var idx = _folder.File("samples-idx3-ubyte");
            EvaluationImages.SaveIdx(sampled.Images, idx);
            using var evaluator = Evaluator.Open(new EvaluationOptions { Images = idx });
            using var read = evaluator.Run(reference);
            Assert.False(read.Sampled);
            Assert.Null(read.Report.Sampler);
            Assert.Null(read.Report.Nll);
            Assert.Null(sampled.Report.Nll);
            Assert.Equal(idx, read.Report.ImagesSource);
            Assert.Equal(sampled.Report.Quality!.FrechetDistance, read.Report.Quality!.FrechetDistance, 6);
            Assert.Equal(sampled.Report.Quality.ClassHistogram, read.Report.Quality.ClassHistogram);
        }
    }

    [Fact]
    public void Open_rejects_bad_settings_and_missing_files_before_any_classifier_work()
    {
        var path = SaveCheckpoint(classes: 0);
        var dataDir = Path.Combine(_folder.Path, "mnist");
        EvaluationOptions O(string? checkpoint = null, string? images = null) =>
            new() { Checkpoint = checkpoint, Images = images, DataDir = dataDir, NllTimesteps = 3 };
        void Rejects(EvaluationOptions options, string word) =>
            Assert.Contains(word, Assert.Throws<ArgumentException>(() => Evaluator.Open(options)).Message);
        Rejects(O(), "checkpoint");
        Rejects(O(path) with { Num = 84 }, "num 84");
        Rejects(O(path) with { BatchSize = 0 }, "batch-size");
        Rejects(O(path) with { Guidance = 1 }, "class-conditional");
        Rejects(O(path) with { NllTimesteps = 10 }, "nll-timesteps 10");
        Rejects(O(path) with { Sampler = new SamplerOptions { Steps = 11 } }, "steps");
        Assert.Throws<WeightsException>(() => Evaluator.Open(O(_folder.File("missing.ckpt"))));
        Assert.Throws<DataException>(() => Evaluator.Open(O(path, _folder.File("missing-images"))));
        var raw = _folder.File("raw.safetensors");
        using (var model = new UNet(TestModels.Tiny(28))) ModelFile.Export(model, raw);
        Assert.Throws<CheckpointException>(() => Evaluator.Open(O(raw)));
        Assert.False(Directory.Exists(dataDir), "a rejected evaluation touched the data folder");
    }
}
