using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Ddpm.Data;
using Ddpm.Diffusion;
using Ddpm.Evaluation;
using Ddpm.Imaging;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm eval</c>: sample-quality metrics in the MNIST classifier's feature space (with anchors), the variational bound in
/// bits/dim, the loss curve, a sample grid and a class histogram; a table on the terminal and everything in eval.json.
/// </summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string?>("--checkpoint") { Description = "checkpoint written by 'ddpm train' (samples N images from it, and its likelihood)" };
        var images = new Option<string?>("--images") { Description = "evaluate this image folder or IDX file (1-channel 28×28) instead of sampling" };
        var num = new Option<int>("--num") { Description = "images to sample (must exceed the 84 feature dimensions)", DefaultValueFactory = _ => 500 };
        var seed = new Option<long>("--seed") { Description = "seed for sampling, the likelihood's noise and timesteps, and the real-image comparison", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "output directory", DefaultValueFactory = _ => "eval" };
        var nll = new Option<string>("--nll") { Description = "variational bound: exact (T terms per image), estimate (K random terms) or none", DefaultValueFactory = _ => "estimate" };
        nll.AcceptOnlyFromAmong("exact", "estimate", "none");
        var nllImages = new Option<int>("--nll-images") { Description = "MNIST test images the likelihood is measured on", DefaultValueFactory = _ => 100 };
        var nllTimesteps = new Option<int>("--nll-timesteps") { Description = "K, KL terms per image for --nll estimate", DefaultValueFactory = _ => 20 };
        var batch = new Option<int>("--batch-size") { Description = "images per sampling / likelihood batch", DefaultValueFactory = _ => 100 };
        var sigma = new Option<string>("--sigma") { Description = "reverse variance σ_t² for sampling and p_θ: beta-tilde or beta", DefaultValueFactory = _ => "beta-tilde" };
        sigma.AcceptOnlyFromAmong("beta-tilde", "beta");
        var clip = new Option<bool>("--clip-x0") { Description = "clip the predicted x_0 to [-1, 1] when sampling and in p_θ" };
        var dataDir = new Option<string>("--data-dir") { Description = "MNIST folder, where the classifier and its anchors are cached", DefaultValueFactory = _ => "data/mnist" };
        var device = CommonOptions.DeviceOption();
        var samplerKind = new Option<string>("--sampler") { Description = "ddpm or ddim", DefaultValueFactory = _ => "ddpm" };
        samplerKind.AcceptOnlyFromAmong("ddpm", "ddim");
        var steps = new Option<int?>("--steps") { Description = "reverse steps S ≤ T (default T; ddpm with S < T is respaced)" };
        var eta = new Option<double>("--eta") { Description = "DDIM η in [0, 1]", DefaultValueFactory = _ => 0.0 };
        var guidance = new Option<double?>("--guidance") { Description = "class-conditional models: sample N/10 of each class with guidance w and report how often the classifier agrees" };
        var noEma = new Option<bool>("--no-ema") { Description = "use the raw weights even when the checkpoint has an EMA" };

        var cmd = new Command("eval", "Evaluate a checkpoint or an image set: classifier-space Fréchet distance, confidence, class balance, bits/dim, plots")
        {
            checkpoint, images, num, seed, output, nll, nllImages, nllTimesteps, batch, sigma, clip, dataDir, device,
            samplerKind, steps, eta, guidance, noEma,
        };
        cmd.SetAction(p => Run(new Settings(
            p.GetValue(checkpoint), p.GetValue(images), p.GetValue(num), p.GetValue(seed), p.GetValue(output)!,
            p.GetValue(nll) switch { "exact" => NllMethod.Exact, "none" => NllMethod.None, _ => NllMethod.Estimate },
            p.GetValue(nllImages), p.GetValue(nllTimesteps), p.GetValue(batch),
            p.GetValue(sigma) == "beta" ? VarianceKind.Beta : VarianceKind.BetaTilde, p.GetValue(clip), p.GetValue(dataDir)!,
            CommonOptions.ResolveDevice(p.GetValue(device)!),
            new SamplerOptions
            {
                Kind = p.GetValue(samplerKind) == "ddim" ? SamplerKind.Ddim : SamplerKind.Ddpm,
                Steps = p.GetValue(steps),
                Eta = p.GetValue(eta),
                Variance = p.GetValue(sigma) == "beta" ? VarianceKind.Beta : VarianceKind.BetaTilde,
                ClipX0 = p.GetValue(clip),
            },
            p.GetValue(guidance), !p.GetValue(noEma))));
        return cmd;
    }

    private sealed record Settings(string? Checkpoint, string? Images, int Num, long Seed, string Out, NllMethod Nll, int NllImages,
        int NllTimesteps, int BatchSize, VarianceKind Variance, bool ClipX0, string DataDir, Device Device,
        SamplerOptions SamplerOptions, double? Guidance, bool UseEma);

    private static void Validate(Settings s)
    {
        if (s.Checkpoint is null && s.Images is null) throw new UsageException("give --checkpoint (to sample from it) or --images (a folder or IDX file), or both");
        if (s.Images is null && s.Num <= MnistClassifier.FeatureDim)
            throw new UsageException($"--num {s.Num} is not more than the classifier's {MnistClassifier.FeatureDim} feature dimensions: the feature " +
                $"covariance would be singular. Use --num {MnistClassifier.FeatureDim + 1} or more (1000+ for a stable Fréchet distance).");
        if (s.NllImages < 1) throw new UsageException($"--nll-images must be >= 1, got {s.NllImages}");
        if (s.BatchSize < 1) throw new UsageException($"--batch-size must be >= 1, got {s.BatchSize}");
        if (s.Nll == NllMethod.Estimate && s.NllTimesteps < 2) throw new UsageException($"--nll-timesteps must be >= 2, got {s.NllTimesteps}");
    }

    private static int Run(Settings s)
    {
        Validate(s);
        var total = Stopwatch.StartNew();
        var inv = CultureInfo.InvariantCulture;
        Directory.CreateDirectory(s.Out);
        var files = new List<string>();

        UNet? model = null;
        Ddpm.Configuration.DdpmConfig? config = null;
        CheckpointManifest? manifest = null;
        if (s.Checkpoint is not null)
        {
            (model, config, manifest) = Checkpoint.LoadModel(s.Checkpoint);
            if (s.UseEma && Checkpoint.HasEma(s.Checkpoint)) Checkpoint.LoadEmaInto(s.Checkpoint, model);
            if (s.Guidance is { } w && (!model.IsConditional || w < 0 || !double.IsFinite(w)))
            {
                model.Dispose();
                throw new UsageException(model.IsConditional ? $"--guidance must be a finite number >= 0, got {w}"
                    : "--guidance needs a class-conditional checkpoint (model_params.num_classes > 0)");
            }
            if (config.Model.ImChannels != 1 || config.Model.ImSize != MnistClassifier.ImageSize)
            {
                model.Dispose();
                throw new DataException(s.Checkpoint, $"its config makes {config.Model.ImChannels}-channel {config.Model.ImSize}×{config.Model.ImSize} images; " +
                    "ddpm eval measures MNIST-like 1-channel 28×28 models (the classifier and the test set are MNIST)");
            }
            model.to(s.Device).eval();
        }
        using var _ = model;
        var diffusion = config is null ? null : GaussianDiffusion.FromOptions(config.Diffusion);
        if (s.Checkpoint is not null && s.Nll == NllMethod.Estimate && s.NllTimesteps > diffusion!.T - 1)
            throw new UsageException($"--nll-timesteps {s.NllTimesteps} exceeds the checkpoint's T − 1 = {diffusion.T - 1} KL terms (use --nll exact)");

        // Classifier (trained once), MNIST, anchors (computed once), the test set's feature statistics.
        var store = new ClassifierStore(s.DataDir);
        var mnistSource = new MnistSource { Log = Console.Error.WriteLine };
        var (classifier, info) = store.EnsureAsync(mnistSource, log: Console.Error.WriteLine).GetAwaiter().GetResult();
        using var __ = classifier;
        var (train, test) = store.LoadMnistAsync(mnistSource).GetAwaiter().GetResult();
        using var ___ = train;
        using var ____ = test;
        var anchors = store.LoadAnchors();
        if (anchors is null || anchors.ClassifierTrainedAt != info.TrainedAt)
        {
            anchors = QualityAnchors.Compute(classifier, info, train, test, 0, Console.Error.WriteLine);
            store.SaveAnchors(anchors);
        }
        using var testOut = classifier.Embed(test.Images);
        using var testStats = FeatureStatistics.FromFeatures(testOut.Features, test.Description);
        double setup = total.Elapsed.TotalSeconds;

        // The images to measure: sampled from the checkpoint, or read from --images.
        var clock = Stopwatch.StartNew();
        Tensor evaluated;
        Tensor? requested = null;
        string source;
        SamplerSettings? samplerSettings = null;
        if (s.Images is not null)
        {
            using var set = EvaluationImages.Load(s.Images);
            if (set.Count <= MnistClassifier.FeatureDim)
                throw new DataException(s.Images, $"holds {set.Count} images, not more than the classifier's {MnistClassifier.FeatureDim} feature " +
                    $"dimensions: the feature covariance would be singular. Provide {MnistClassifier.FeatureDim + 1} or more (1000+ recommended).");
            evaluated = set.Batch(arange(set.Count, dtype: int64));
            source = s.Images;
        }
        else
        {
            ISampler sampler;
            try { sampler = s.SamplerOptions.Create(diffusion!.Schedule); }
            catch (ArgumentException e) { throw new UsageException(e.Message); }
            var name = s.SamplerOptions.Kind == SamplerKind.Ddim ? $"ddim (eta {s.SamplerOptions.Eta.ToString(inv)})"
                : sampler.Timesteps.Count < diffusion!.T ? "ddpm (respaced)" : "ddpm";
            if (s.Guidance is { } w) name += $", guidance w = {w.ToString(inv)}, classes i mod {config!.Model.NumClasses}";
            samplerSettings = new SamplerSettings(name, s.Variance, s.ClipX0, sampler.Timesteps.Count, s.BatchSize);
            evaluated = Sample(model!, diffusion!, sampler, s, config!.Model.ImSize, out requested);
            source = $"{s.Num} images sampled from {s.Checkpoint}";
            var idxPath = Path.Combine(s.Out, "samples-idx3-ubyte");
            EvaluationImages.SaveIdx(evaluated, idxPath);
            files.Add(idxPath);
        }
        using var ______ = evaluated;
        double sampling = clock.Elapsed.TotalSeconds;

        // Metrics: the evaluated set vs the test set, N random training images vs the test set (the floor at this N).
        clock.Restart();
        long n = evaluated.shape[0];
        SampleQuality quality, realAtN;
        double? agreement = null;
        using (var quantized = Pixels.Quantize(evaluated))
        using (var outputs = classifier.Embed(quantized))
        {
            quality = SampleQuality.Measure(outputs, testStats, source);
            if (requested is not null)
                agreement = outputs.Probabilities.argmax(1).cpu().eq(requested).to(float64).mean().item<double>();
        }
        requested?.Dispose();
        using (var g = new Generator((ulong)s.Seed, new Device("cpu")))
        using (var pick = randperm(train.Count, dtype: int64, generator: g).narrow(0, 0, Math.Min(n, train.Count)))
        using (var real = train.Images.index_select(0, pick))
        using (var realOut = classifier.Embed(real))
            realAtN = SampleQuality.Measure(realOut, testStats, "MNIST training images");
        var gridPath = Path.Combine(s.Out, "samples.png");
        using (var first = evaluated.narrow(0, 0, Math.Min(100, n))) ImageGrid.SavePng(first, 10, gridPath);
        var histPath = Path.Combine(s.Out, "class_histogram.png");
        AtomicFile.WriteAllBytes(histPath, Charts.ClassHistogram(quality.ClassHistogram, $"Predicted digits of {n} images (MNIST classifier)"));
        files.Add(gridPath);
        files.Add(histPath);
        if (s.Checkpoint is not null)
        {
            var runDir = Path.GetDirectoryName(Path.GetFullPath(s.Checkpoint))!;
            if (File.Exists(Path.Combine(runDir, TrainingLog.StepFile)) || File.Exists(Path.Combine(runDir, TrainingLog.EpochFile)))
            {
                var lossPath = Path.Combine(s.Out, "loss_curve.png");
                AtomicFile.WriteAllBytes(lossPath, Charts.LossCurve(TrainingLog.Read(runDir), $"Training loss ({runDir})"));
                files.Add(lossPath);
            }
            else Console.Error.WriteLine($"no training log beside {s.Checkpoint}: loss curve skipped");
        }
        double metrics = clock.Elapsed.TotalSeconds;

        // The variational bound on MNIST test images.
        clock.Restart();
        BitsPerDim? bpd = null;
        string? nllData = null;
        if (model is not null && s.Nll != NllMethod.None)
        {
            int m = (int)Math.Min(s.NllImages, test.Count);
            nllData = $"the first {m} MNIST test images";
            var bound = new VariationalBound(diffusion!, s.Variance, s.ClipX0);
            long perImage = s.Nll == NllMethod.Exact ? diffusion!.T : s.NllTimesteps + 1;
            var progress = new ProgressLine();
            var nllClock = Stopwatch.StartNew();
            Action<long> onProgress = done =>
            {
                double rate = done / Math.Max(nllClock.Elapsed.TotalSeconds, 1e-9);
                progress.Update(done, m * perImage, string.Create(inv, $"bits/dim ({s.Nll.ToString().ToLowerInvariant()}) image-terms"),
                    TimeSpan.FromSeconds((m * perImage - done) / Math.Max(rate, 1e-9)));
            };
            NoisePredictor eps = diffusion!.AsEpsPredictor((x, t) => model.forward(x, t));
            var batches = Batches(test, m, s.BatchSize, s.Device);
            bpd = s.Nll == NllMethod.Exact
                ? bound.Exact(eps, batches, s.Seed, onProgress)
                : bound.Estimate(eps, batches, s.NllTimesteps, s.Seed, onProgress);
            progress.Finish();
        }
        double nllSeconds = clock.Elapsed.TotalSeconds;

        var report = new EvaluationReport
        {
            Checkpoint = s.Checkpoint,
            CheckpointStep = manifest?.Step,
            CheckpointEpoch = manifest?.Epoch,
            ConfigYaml = config?.ToYaml(),
            ImagesSource = source,
            Sampler = samplerSettings,
            Num = n,
            Seed = s.Seed,
            Device = s.Device.type.ToString().ToLowerInvariant(),
            ClassifierPath = store.WeightsPath,
            Classifier = info,
            Quality = quality,
            RealAtSameN = realAtN,
            Anchors = anchors,
            Nll = bpd,
            ClassAgreement = agreement,
            NllData = nllData,
            Timings = new EvaluationTimings { Setup = setup, Sampling = sampling, Metrics = metrics, Nll = nllSeconds, Total = total.Elapsed.TotalSeconds },
            Files = files.Append(Path.Combine(s.Out, "eval.json")).ToList(),
        };
        report.Save(Path.Combine(s.Out, "eval.json"));
        PrintTable(report);
        return CliApp.Ok;
    }

    /// <summary>
    /// The sampler for s.Num images, batch by batch; x_T and the step noise come from one CPU generator seeded by --seed.
    /// With --guidance, image i asks for class i mod num_classes (returned in <paramref name="requested"/>).
    /// </summary>
    private static Tensor Sample(UNet model, GaussianDiffusion diffusion, ISampler sampler, Settings s, int size, out Tensor? requested)
    {
        requested = s.Guidance is null ? null : arange(s.Num, dtype: int64).remainder(model.Options.NumClasses).DetachFromDisposeScope();
        using var generator = new Generator((ulong)s.Seed, new Device("cpu"));
        var parts = new List<Tensor>();
        var progress = new ProgressLine();
        var clock = Stopwatch.StartNew();
        long steps = (long)sampler.Timesteps.Count * ((s.Num + s.BatchSize - 1) / s.BatchSize);
        long done = 0;
        try
        {
            for (int start = 0; start < s.Num; start += s.BatchSize)
            {
                using var scope = NewDisposeScope();
                int b = Math.Min(s.BatchSize, s.Num - start);
                var xT = randn([b, 1, size, size], dtype: float32, generator: generator).to(s.Device);
                var stepGenerator = s.Device.type == DeviceType.CPU ? generator : null;
                NoisePredictor predictor = s.Guidance is { } w
                    ? ClassifierFreeGuidance.Guided(model, requested!.narrow(0, start, b).to(s.Device), w, diffusion.EpsFromOutput)
                    : diffusion.AsEpsPredictor((xt, t) => model.forward(xt, t));
                var x = SamplingLoop.Run(sampler, predictor, xT, stepGenerator, (_, t, _) =>
                {
                    done++;
                    double perStep = clock.Elapsed.TotalSeconds / done;
                    progress.Update(done, steps, string.Create(CultureInfo.InvariantCulture, $"sampling {start + b}/{s.Num} t={t}"),
                        TimeSpan.FromSeconds(perStep * (steps - done)));
                });
                parts.Add(x.cpu().MoveToOuterDisposeScope());
            }
            progress.Finish();
            return cat(parts, 0);
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
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

    private static void PrintTable(EvaluationReport r)
    {
        var w = Console.Out;
        var inv = CultureInfo.InvariantCulture;
        w.WriteLine();
        w.WriteLine(r.Checkpoint is not null
            ? $"ddpm eval: {r.Checkpoint} (epoch {r.CheckpointEpoch}, step {r.CheckpointStep}), {r.ImagesSource}, seed {r.Seed}"
            : $"ddpm eval: {r.ImagesSource}");
        if (r.Sampler is { } sm)
            w.WriteLine($"sampler: {sm.Name}, σ² = {(sm.Variance == VarianceKind.Beta ? "β_t" : "β̃_t")}, clip x0 {sm.ClipX0}, {sm.Steps} steps");
        if (r.ClassAgreement is { } agree)
            w.WriteLine(string.Create(inv, $"class agreement (classifier's label = requested class): {100 * agree:F1}%"));
        w.WriteLine(string.Create(inv, $"classifier: {r.ClassifierPath}, test accuracy {100 * r.Classifier!.TestAccuracy:F2}%"));
        w.WriteLine();
        w.WriteLine("sample quality (MNIST classifier; Fréchet distance vs the MNIST test set's feature statistics):");
        EvalTable.PrintQualityHeader(w);
        EvalTable.PrintQualityRow(w, "evaluated images", r.Quality!);
        EvalTable.PrintQualityRow(w, $"real training images, same N", r.RealAtSameN!);
        EvalTable.PrintQualityRow(w, "anchor floor: 10k real test vs train", r.Anchors!.Floor);
        EvalTable.PrintQualityRow(w, "anchor ceiling: Gaussian noise", r.Anchors.Ceiling);
        w.WriteLine($"  predicted-class histogram: {EvalTable.Histogram(r.Quality!.ClassHistogram)}");
        w.WriteLine(string.Create(inv, $"  mean top probability {r.Quality.MeanTopProbability:F3}; class KL from uniform in nats (0 = balanced, ln 10 = 2.303 = one class)"));
        w.WriteLine(EvalTable.NotInceptionNote);
        if (r.Nll is { } b)
        {
            w.WriteLine();
            w.WriteLine($"negative log-likelihood bound on {r.NllData} ({b.Method.ToString().ToLowerInvariant()}, " +
                (b.Method == NllMethod.Exact ? $"all {b.Timesteps} terms" : $"{b.KlTermsEvaluated} of {b.Timesteps - 1} KL terms per image") + "):");
            var subsetError = b.Method == NllMethod.Estimate ? string.Format(inv, "  ± {0:F4} (timestep subset)", b.TimestepStdErr) : "";
            w.WriteLine(string.Format(inv, "  total              {0,9:F4} bits/dim  ± {1:F4} (images){2}", b.Total, b.ImageStdErr, subsetError));
            w.WriteLine(string.Create(inv, $"  prior L_T          {b.Prior,9:F5}"));
            w.WriteLine(string.Create(inv, $"  KL terms Σ L_t-1   {b.Kl,9:F4}"));
            w.WriteLine(string.Create(inv, $"  decoder L_0        {b.Decoder,9:F4}"));
        }
        w.WriteLine();
        var t = r.Timings;
        w.WriteLine(string.Create(inv, $"time: setup {t.Setup:F1} s, sampling {t.Sampling:F1} s, metrics {t.Metrics:F1} s, bits/dim {t.Nll:F1} s, total {t.Total:F1} s"));
        w.WriteLine("files: " + string.Join(", ", r.Files));
    }
}
