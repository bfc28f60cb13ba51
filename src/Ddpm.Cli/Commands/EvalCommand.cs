using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Ddpm.Diffusion;
using Ddpm.Evaluation;
using Ddpm.IO;
using Ddpm.Sampling;

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
        var nll = CommonOptions.EnumOption("--nll", "variational bound: exact (T terms per image), estimate (K random terms) or none", NllMethod.Estimate, "likelihood method");
        var nllImages = new Option<int>("--nll-images") { Description = "MNIST test images the likelihood is measured on", DefaultValueFactory = _ => 100 };
        var nllTimesteps = new Option<int>("--nll-timesteps") { Description = "K, KL terms per image for --nll estimate", DefaultValueFactory = _ => 20 };
        var batch = new Option<int>("--batch-size") { Description = "images per sampling / likelihood batch", DefaultValueFactory = _ => 100 };
        var dataDir = new Option<string>("--data-dir") { Description = "MNIST folder, where the classifier and its anchors are cached", DefaultValueFactory = _ => "data/mnist" };
        var device = CommonOptions.DeviceOption();
        var guidance = new Option<double?>("--guidance") { Description = "class-conditional models: sample N/10 of each class with guidance w and report how often the classifier agrees" };
        var noEma = new Option<bool>("--no-ema") { Description = "use the raw weights even when the checkpoint has an EMA" };

        var cmd = new Command("eval", "Evaluate a checkpoint or an image set: classifier-space Fréchet distance, confidence, class balance, bits/dim, plots")
        {
            checkpoint, images, num, seed, output, nll, nllImages, nllTimesteps, batch, dataDir, device, guidance, noEma,
        };
        var sampler = new SamplerOptionSet(SamplerOptions.RecommendedKind, " (when sampling and in the likelihood's p_θ)");
        sampler.AddTo(cmd);
        cmd.SetAction(p => Run(new EvaluationOptions
        {
            Checkpoint = p.GetValue(checkpoint),
            Images = p.GetValue(images),
            Num = p.GetValue(num),
            Seed = p.GetValue(seed),
            Nll = p.GetValue(nll),
            NllImages = p.GetValue(nllImages),
            NllTimesteps = p.GetValue(nllTimesteps),
            BatchSize = p.GetValue(batch),
            Sampler = sampler.Read(p),
            Guidance = p.GetValue(guidance),
            UseEma = !p.GetValue(noEma),
            DataDir = p.GetValue(dataDir)!,
        }, p.GetValue(device), p.GetValue(output)!));
        return cmd;
    }

    /// <summary>Checks and loads (usage errors before any work), runs the <see cref="Evaluator"/>, writes its files, prints the table.</summary>
    private static int Run(EvaluationOptions options, DeviceChoice device, string outDir)
    {
        try { options.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        PathCheck.EnsureWritableFolder(outDir, "--out"); // before the classifier, the sampling and the likelihood
        options = options with { Device = CommonOptions.ResolveDevice(device) };
        // mpirun (only): the samples split by index over the ranks; rank 0 gathers them, measures, writes and reports.
        var mpi = Ddpm.Distributed.MpiCommunicator.Current is { Size: > 1 } job ? job : null;
        if (mpi is { Rank: > 0 } && options.Images is not null) return CliApp.Ok; // nothing to sample: rank 0 measures the set
        Evaluator evaluator;
        try { evaluator = Evaluator.Open(options, mpi); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        using (evaluator)
        {
            if (mpi is { Rank: > 0 })
            {
                evaluator.SamplePart();
                return CliApp.Ok;
            }
            var bar = new PhaseProgress();
            using var result = evaluator.Run(Console.Error.WriteLine, bar.Update);
            bar.Finish();
            Directory.CreateDirectory(outDir);
            var files = new List<string>();
            void Write(string name, byte[] bytes)
            {
                var path = Path.Combine(outDir, name);
                AtomicFile.WriteAllBytes(path, bytes);
                files.Add(path);
            }
            if (result.Sampled)
            {
                var idxPath = Path.Combine(outDir, "samples-idx3-ubyte");
                EvaluationImages.SaveIdx(result.Images, idxPath);
                files.Add(idxPath);
            }
            Write("samples.png", result.SampleGridPng);
            Write("class_histogram.png", result.ClassHistogramPng);
            if (result.LossCurvePng is { } curve) Write("loss_curve.png", curve);
            var jsonPath = Path.Combine(outDir, "eval.json");
            var report = result.Report with { Files = files.Append(jsonPath).ToList() };
            report.Save(jsonPath);
            PrintTable(report);
        }
        return CliApp.Ok;
    }

    /// <summary>One progress bar per phase of the evaluation (sampling, bits/dim), with an ETA from the phase's rate so far.</summary>
    private sealed class PhaseProgress
    {
        private readonly Stopwatch _clock = new();
        private ProgressLine? _line;
        private string? _phase;
        private long _firstDone;

        public void Update(EvaluationProgress p)
        {
            if (p.Phase != _phase)
            {
                _line?.Finish();
                (_line, _phase, _firstDone) = (new ProgressLine(), p.Phase, p.Done);
                _clock.Restart();
            }
            TimeSpan? eta = p.Done > _firstDone
                ? TimeSpan.FromSeconds(_clock.Elapsed.TotalSeconds / (p.Done - _firstDone) * (p.Total - p.Done))
                : null;
            _line!.Update(p.Done, p.Total, p.Detail, eta);
        }

        public void Finish() => _line?.Finish();
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
