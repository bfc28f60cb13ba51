using System.Diagnostics;
using System.Globalization;
using Ddpm.Data;
using Ddpm.Diffusion;
using Ddpm.Distributed;
using Ddpm.Imaging;
using Ddpm.Interop;
using Ddpm.IO;
using Ddpm.Runtime;
using Ddpm.Sampling;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>
/// <c>ddpm eval</c> as a library call: sample quality in the MNIST classifier's feature space (Fréchet distance,
/// confidence, class balance, IS-style score) against the real test set, beside the same-N real floor and the anchors;
/// class agreement under guidance; the variational bound in bits/dim; the sample grid, class histogram and loss curve.
/// <see cref="Open"/> checks every setting and reads the checkpoint and the image set before any classifier work.
/// </summary>
public sealed class Evaluator : IDisposable
{
    private readonly ImageGenerator? _generator;
    private readonly ImageDataset? _images;

    /// <summary>Ranks that split the sampling by image index (mpirun), or null: one process samples
    /// everything.</summary>
    private readonly ICommunicator? _ranks;

    private Evaluator(EvaluationOptions options, ImageGenerator? generator, ImageDataset? images, ICommunicator? ranks)
    {
        Options = options;
        _generator = generator;
        _images = images;
        _ranks = ranks;
    }

    public EvaluationOptions Options { get; }

    /// <summary>
    /// Validates <paramref name="options"/> and loads what they name: the checkpoint (EMA weights unless
    /// <see cref="EvaluationOptions.UseEma"/> is false) and the image set.
    /// </summary>
    /// <exception cref="ArgumentException">A setting out of range or not fitting the checkpoint (sampler, guidance,
    /// K).</exception>
    /// <exception cref="WeightsException">The checkpoint path is missing or unreadable.</exception>
    /// <exception cref="CheckpointException">Not a ddpm checkpoint, or a corrupt one.</exception>
    /// <exception cref="DataException">A checkpoint of other than 1-channel 28 × 28 images; a missing, unreadable or
    /// too small image set.</exception>
    /// <param name="options">What to evaluate.</param>
    /// <param name="ranks">
    /// Data-parallel sampling (mpirun): every rank opens the same options; rank 0 calls
    /// <see cref="Run(Action{string}, Action{EvaluationProgress}, CancellationToken)"/>, which samples its part and
    /// gathers the others' (<see cref="ShardedGeneration"/>), the others call <see cref="SamplePart"/>.
    /// </param>
    public static Evaluator Open(EvaluationOptions options, ICommunicator? ranks = null)
    {
        TorchSharpPatch.EnsureApplied();
        options.Validate();
        ImageGenerator? generator = null;
        ImageDataset? images = null;
        try
        {
            if (options.Checkpoint is { } path)
            {
                if (StateDictIo.Detect(path) != WeightFormat.Checkpoint)
                    throw new CheckpointException(path, "holds raw weights, not a ddpm checkpoint: evaluation needs the checkpoint's config (convert it with 'ddpm import')");
                generator = ImageGenerator.Load(path, options.Device, useEma: options.UseEma);
                var config = generator.Source!.Config;
                if (config.Model.ImChannels != 1 || config.Model.ImSize != MnistClassifier.ImageSize)
                    throw new DataException(path, $"its config makes {config.Model.ImChannels}-channel {config.Model.ImSize}×{config.Model.ImSize} images; " +
                        "evaluation measures MNIST-like 1-channel 28×28 models (the classifier and the test set are MNIST)");
                if (options.Guidance is not null && !generator.Model.IsConditional)
                    throw new ArgumentException("guidance needs a class-conditional checkpoint (model_params.num_classes > 0)");
                if (options.Nll == NllMethod.Estimate && options.NllTimesteps > generator.Diffusion.T - 1)
                    throw new ArgumentException($"nll-timesteps {options.NllTimesteps} exceeds the checkpoint's T − 1 = {generator.Diffusion.T - 1} KL terms (use the exact bound)");
                if (options.Images is null) generator.Plan(SamplingRequest(options, generator));
            }
            if (options.Images is { } imagesPath)
            {
                images = EvaluationImages.Load(imagesPath);
                if (images.Count <= MnistClassifier.FeatureDim)
                    throw new DataException(imagesPath, $"holds {images.Count} images, not more than the classifier's {MnistClassifier.FeatureDim} feature " +
                        $"dimensions: the feature covariance would be singular. Provide {MnistClassifier.FeatureDim + 1} or more (1000+ recommended).");
            }
            return new Evaluator(options, generator, images, ranks is { Size: > 1 } ? ranks : null);
        }
        catch
        {
            generator?.Dispose();
            images?.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The whole of <c>ddpm eval</c>: checks (before any work), loads, runs and writes the result's files into
    /// <paramref name="folder"/> (<see cref="EvaluationResult.SaveTo"/>). With several <paramref name="ranks"/>
    /// (mpirun) the samples split by index: rank 0 gathers, measures and writes, the others sample their part and
    /// return null.
    /// </summary>
    /// <exception cref="RequestException">A setting out of range or not fitting the checkpoint.</exception>
    public static EvaluationReport? Evaluate(EvaluationOptions options, string folder, ICommunicator? ranks = null, Action<string>? log = null,
        Action<EvaluationProgress>? progress = null, CancellationToken cancel = default)
    {
        try { options.Validate(); }
        catch (ArgumentException e) { throw new RequestException(e.Message); }
        PathCheck.EnsureWritableFolder(folder, "--out"); // before the classifier, the sampling and the likelihood
        ranks = ranks is { Size: > 1 } ? ranks : null;
        if (ranks is { Rank: > 0 } && options.Images is not null) return null; // nothing to sample: rank 0 measures the set
        Evaluator evaluator;
        try { evaluator = Open(options, ranks); }
        catch (ArgumentException e) { throw new RequestException(e.Message); }
        using var _ = evaluator;
        if (ranks is { Rank: > 0 })
        {
            evaluator.SamplePart(cancel);
            return null;
        }
        using var result = evaluator.Run(log, progress, cancel);
        return result.SaveTo(folder);
    }

    /// <summary>The samples asked for: Num images of the seed; with guidance, image i as class i mod
    /// num_classes.</summary>
    private static GenerationRequest SamplingRequest(EvaluationOptions o, ImageGenerator generator) => new()
    {
        Count = o.Num,
        Seed = o.Seed,
        Sampler = o.Sampler,
        MaxBatchSize = o.BatchSize,
        Labels = o.Guidance is null ? null : GenerationRequest.CyclingClasses(o.Num, generator.Model.Options.NumClasses),
        Guidance = o.Guidance ?? 0,
    };

    /// <summary>
    /// A rank other than 0 of a data-parallel evaluation (<see cref="Open"/> with ranks): samples its part of the
    /// images and sends it to rank 0, which measures them all.
    /// </summary>
    public void SamplePart(CancellationToken cancel = default)
    {
        if (_ranks is not { Rank: > 0 } ranks || _generator is not { } generator)
            throw new InvalidOperationException("SamplePart is for ranks other than 0 of an evaluation that samples over several ranks");
        using var part = ShardedGeneration.Generate(generator, SamplingRequest(Options, generator), ranks, cancel: cancel);
    }

    /// <summary>Runs the evaluation against the MNIST reference cached in <see cref="EvaluationOptions.DataDir"/> (made
    /// once when missing).</summary>
    public EvaluationResult Run(Action<string>? log = null, Action<EvaluationProgress>? progress = null, CancellationToken cancel = default)
    {
        var total = Stopwatch.StartNew();
        using var reference = EvaluationReference.Load(Options.DataDir, log, cancel);
        return Run(reference, log, progress, cancel, total);
    }

    /// <summary>Runs the evaluation against a given reference (classifier, real sets, anchors).</summary>
    public EvaluationResult Run(EvaluationReference reference, Action<string>? log = null, Action<EvaluationProgress>? progress = null,
        CancellationToken cancel = default) => Run(reference, log, progress, cancel, Stopwatch.StartNew());

    private EvaluationResult Run(EvaluationReference reference, Action<string>? log, Action<EvaluationProgress>? progress, CancellationToken cancel,
        Stopwatch total)
    {
        if (_ranks is { Rank: > 0 }) throw new InvalidOperationException("only rank 0 runs the evaluation; the other ranks call SamplePart");
        TorchSharpPatch.EnsureApplied();
        var o = Options;
        var inv = CultureInfo.InvariantCulture;
        var testStats = reference.TestStatistics;
        double setup = total.Elapsed.TotalSeconds;

        // The images to measure: read from the image set, or sampled from the checkpoint.
        var clock = Stopwatch.StartNew();
        Tensor evaluated;
        int[]? requested = null;
        string source;
        SamplerSettings? samplerSettings = null;
        if (_images is not null)
        {
            using var all = arange(_images.Count, dtype: int64);
            evaluated = _images.Batch(all);
            source = o.Images!;
        }
        else
        {
            var generator = _generator!;
            var request = SamplingRequest(o, generator);
            var plan = generator.Plan(request);
            var sampler = generator.Resolve(request).Sampler; // a distilled student's own grid
            var name = sampler.Describe(generator.Diffusion.T);
            if (generator.Distilled is { } d) name = $"{d.Method}-distilled student: {name}";
            if (o.Guidance is { } w) name += $", guidance w = {w.ToString(inv)}, classes i mod {generator.Model.Options.NumClasses}";
            samplerSettings = new SamplerSettings(name, sampler.Variance, sampler.ClipX0, plan.Timesteps.Count,
                o.BatchSize);
            requested = request.Labels?.ToArray();
            Action<GenerationStep> onStep = s => progress?.Invoke(new EvaluationProgress("sampling", s.Done, s.Total,
                $"sampling {s.BatchFirstIndex + s.BatchCount}/{o.Num} t={s.Timestep}"));
            var result = _ranks is null ? generator.Generate(request, onStep, cancel) : ShardedGeneration.Generate(generator, request, _ranks, onStep, cancel);
            evaluated = result.Images;
            source = $"{o.Num} images sampled from {o.Checkpoint}";
        }
        double sampling = clock.Elapsed.TotalSeconds;
        try
        {
            // Metrics: the evaluated set vs the test set, N random training images vs the test set (the floor at this
            // N).
            clock.Restart();
            long n = evaluated.shape[0];
            SampleQuality quality, realAtN;
            double? agreement = null;
            using (var quantized = Pixels.Quantize(evaluated))
            using (var outputs = reference.Classifier.Embed(quantized))
            {
                quality = SampleQuality.Measure(outputs, testStats, source);
                if (requested is not null)
                {
                    using var wanted = tensor(requested.Select(y => (long)y).ToArray(), dtype: int64);
                    using var predicted = outputs.Probabilities.argmax(1).cpu();
                    using var hits = predicted.eq(wanted).to(float64);
                    agreement = hits.mean().item<double>();
                }
            }
            using (var g = new Generator((ulong)o.Seed, new Device("cpu")))
            using (var pick = randperm(reference.Train.Count, dtype: int64, generator: g).narrow(0, 0, Math.Min(n, reference.Train.Count)))
            using (var real = reference.Train.Images.index_select(0, pick))
            using (var realOut = reference.Classifier.Embed(real))
                realAtN = SampleQuality.Measure(realOut, testStats, "MNIST training images");
            byte[] grid;
            using (var first = evaluated.narrow(0, 0, Math.Min(100, n))) grid = ImageGrid.ToPng(first, 10);
            var histogram = Charts.ClassHistogram(quality.ClassHistogram, $"Predicted digits of {n} images (MNIST classifier)");
            var lossCurve = LossCurve(log);
            double metrics = clock.Elapsed.TotalSeconds;

            // The variational bound on the first MNIST test images.
            clock.Restart();
            // A distilled student was trained at its grid's timesteps only: its ε elsewhere bounds nothing.
            bool student = _generator?.Distilled is not null;
            if (student && o.Nll != NllMethod.None)
                log?.Invoke("a distilled student has no likelihood bound: bits/dim skipped");
            var (bpd, nllData) = _generator is null || o.Nll == NllMethod.None || student
                ? (null, null)
                : Bound(reference.Test, progress, cancel);
            double nll = clock.Elapsed.TotalSeconds;

            var manifest = _generator?.Source!.Manifest;
            var report = new EvaluationReport
            {
                Checkpoint = o.Checkpoint,
                CheckpointStep = manifest?.Step,
                CheckpointEpoch = manifest?.Epoch,
                ConfigYaml = _generator?.Source!.Config.ToYaml(),
                ImagesSource = source,
                Sampler = samplerSettings,
                Num = n,
                Seed = o.Seed,
                Device = (o.Device ?? CPU).type.ToString().ToLowerInvariant(),
                ClassifierPath = reference.ClassifierPath,
                Classifier = reference.Info,
                Quality = quality,
                RealAtSameN = realAtN,
                Anchors = reference.Anchors,
                Nll = bpd,
                ClassAgreement = agreement,
                NllData = nllData,
                Timings = new EvaluationTimings { Setup = setup, Sampling = sampling, Metrics = metrics, Nll = nll, Total = total.Elapsed.TotalSeconds },
            };
            return new EvaluationResult(report, evaluated, _images is null, grid, histogram, lossCurve);
        }
        catch
        {
            evaluated.Dispose();
            throw;
        }
    }

    /// <summary>The loss curve from the training log beside the checkpoint, or null (said in the log) when there is
    /// none.</summary>
    private byte[]? LossCurve(Action<string>? log)
    {
        if (Options.Checkpoint is null) return null;
        var run = new Runs.RunFolder(Path.GetDirectoryName(Path.GetFullPath(Options.Checkpoint))!);
        if (TrainingLog.Exists(run)) return Charts.LossCurve(TrainingLog.Read(run), $"Training loss ({run.Path})");
        log?.Invoke($"no training log beside {Options.Checkpoint}: loss curve skipped");
        return null;
    }

    /// <summary>The bound (exact or estimated) over the first NllImages test images, with the model's ε (whatever it
    /// predicts).</summary>
    private (BitsPerDim, string) Bound(ImageDataset test, Action<EvaluationProgress>? progress, CancellationToken cancel)
    {
        var o = Options;
        var generator = _generator!;
        int m = (int)Math.Min(o.NllImages, test.Count);
        var bound = new VariationalBound(generator.Diffusion, o.Sampler.Variance, o.Sampler.ClipX0);
        long perImage = o.Nll == NllMethod.Exact ? generator.Diffusion.T : o.NllTimesteps + 1;
        var detail = $"bits/dim ({o.Nll.ToString().ToLowerInvariant()}) image-terms";
        Action<long> onProgress = done =>
        {
            cancel.ThrowIfCancellationRequested();
            progress?.Invoke(new EvaluationProgress("bits/dim", done, m * perImage, detail));
        };
        var batches = Batches(test, m, o.BatchSize, generator.Device);
        var bpd = o.Nll == NllMethod.Exact
            ? bound.Exact(generator.EpsPredictor, batches, o.Seed, onProgress)
            : bound.Estimate(generator.EpsPredictor, batches, o.NllTimesteps, o.Seed, onProgress);
        return (bpd, $"the first {m} MNIST test images");
    }

    private static IEnumerable<Tensor> Batches(ImageDataset data, int count, int batchSize, Device device)
    {
        for (int start = 0; start < count; start += batchSize)
        {
            using var idx = arange(start, Math.Min(start + batchSize, count), dtype: int64);
            using var x = data.Batch(idx, device);
            yield return x;
        }
    }

    public void Dispose()
    {
        _generator?.Dispose();
        _images?.Dispose();
    }
}
