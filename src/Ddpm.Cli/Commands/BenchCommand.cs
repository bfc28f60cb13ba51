using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Ddpm.Configuration;
using Ddpm.IO;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm bench</c>: training images/s and sampling ms/step for configs on a device, warm-up excluded, median of
/// repeats, as a table and JSON. Speed targets live here, not in timed tests.
/// </summary>
internal static class BenchCommand
{
    public sealed record TrainResult(string Config, long Parameters, int Batch, double MedianImagesPerSecond, double[] ImagesPerSecond,
        string? GpuMemoryAfter);
    public sealed record SampleResult(string Config, int Batch, double MedianMsPerStep, double[] MsPerStep, int? FullSteps, double? FullSeconds);
    /// <param name="Optimizer">Always <c>flat</c> (<see cref="FlatAdam"/>; the per-tensor path is gone, its numbers are in docs/bench/), so reports compare with older ones.</param>
    /// <param name="CudaGraphs">"on" when training steps and sampling forwards replay CUDA graphs, else "off (why)".</param>
    public sealed record Settings(string Optimizer, int SyncEvery, string Precision, bool CudnnBenchmark, string CudaGraphs);
    public sealed record Report(string Device, string Machine, int Threads, Settings Settings, IReadOnlyList<TrainResult> Training,
        IReadOnlyList<SampleResult> Sampling, IReadOnlyList<string> GraphChecks, double PeakRssMb, string? PeakGpuMemory, DateTimeOffset When);

    public static Command Create()
    {
        var configs = new Option<string[]>("--config")
        {
            Description = "configs to measure (repeatable; default configs/mnist.yaml and configs/quick.yaml)",
            AllowMultipleArgumentsPerToken = true,
        };
        var batches = new Option<string?>("--batch-sizes") { Description = "training batch sizes, comma-separated (default: 16 on cpu, 64,256 on cuda)" };
        var sampleBatch = new Option<int>("--sample-batch") { Description = "images per sampling step", DefaultValueFactory = _ => 100 };
        var repeats = new Option<int>("--repeats") { Description = "timed repeats (the median is reported)", DefaultValueFactory = _ => 5 };
        var steps = new Option<int?>("--steps") { Description = "steps per repeat (default 3 on cpu, 10 on cuda)" };
        var warmup = new Option<int?>("--warmup")
        {
            Description = "untimed steps first (default 2 on cpu; 40 on cuda, past .NET's tier-0 code and cuDNN's autotuning)",
        };
        var output = new Option<string>("--out") { Description = "JSON report path", DefaultValueFactory = _ => "bench.json" };
        var noSample = new Option<bool>("--no-sample") { Description = "skip the sampling measurement" };
        var sampleFull = new Option<bool>("--sample-full") { Description = "also time one whole sampling run (all T steps) per config" };
        var verifyGraphs = new Option<bool>("--verify-graphs")
        {
            Description = "where CUDA graphs are used, also compare them with eager runs: one sampling forward, and 20 training steps from the same start (max |Δ|)",
        };
        var syncEvery = new Option<int?>("--sync-every") { Description = "steps between host reads of the loss (default: the trainer's, 1 on cpu, 50 on cuda)" };
        var precision = CommonOptions.OptionalEnumOption<Precision>("--precision", "fp32 or bf16 (default: each config's train_params.precision)", "precision");
        var device = CommonOptions.DeviceOption();
        var cmd = new Command("bench", "Measure training img/s and sampling ms/step (median of repeats, warm-up excluded)")
        {
            configs, batches, sampleBatch, repeats, steps, warmup, output, noSample, sampleFull, verifyGraphs, syncEvery, precision, device,
        };
        cmd.SetAction(p =>
        {
            var dev = CommonOptions.ResolveDevice(p.GetValue(device)!);
            var paths = p.GetValue(configs) is { Length: > 0 } given ? given : ["configs/mnist.yaml", "configs/quick.yaml"];
            var sizes = ParseSizes(p.GetValue(batches), dev);
            bool onGpu = dev.type == DeviceType.CUDA;
            int r = p.GetValue(repeats), s = p.GetValue(steps) ?? (onGpu ? 10 : 3), w = p.GetValue(warmup) ?? (onGpu ? 40 : 2), sb = p.GetValue(sampleBatch);
            if (r < 1 || s < 1 || w < 0 || sb < 1) throw new UsageException("--repeats, --steps and --sample-batch must be >= 1, --warmup >= 0");
            if (p.GetValue(syncEvery) is < 1) throw new UsageException("--sync-every must be >= 1");
            var options = new Options(sizes, sb, r, s, w, new TrainerOptions { SyncEvery = p.GetValue(syncEvery) }, p.GetValue(precision), p.GetValue(sampleFull),
                p.GetValue(verifyGraphs));
            return Run(paths, options, dev, p.GetValue(output)!, !p.GetValue(noSample));
        });
        return cmd;
    }

    private static int[] ParseSizes(string? text, Device device)
    {
        if (text is null) return device.type == DeviceType.CUDA ? [64, 256] : [16];
        try
        {
            var sizes = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
            if (sizes.Length == 0 || sizes.Any(b => b < 1)) throw new FormatException();
            return sizes;
        }
        catch (FormatException)
        {
            throw new UsageException($"--batch-sizes: expected positive integers like 64,256, got '{text}'");
        }
    }

    private sealed record Options(int[] BatchSizes, int SampleBatch, int Repeats, int Steps, int Warmup, TrainerOptions Trainer,
        Precision? Precision, bool SampleFull, bool VerifyGraphs);

    private static int Run(string[] configPaths, Options o, Device device, string outPath, bool sample)
    {
        int repeats = o.Repeats;
        var inv = CultureInfo.InvariantCulture;
        var training = new List<TrainResult>();
        var sampling = new List<SampleResult>();
        var checks = new List<string>();
        bool verify = o.VerifyGraphs && Ddpm.Runtime.CudaGraphs.ReasonNotToUse(device) is null;
        foreach (var path in configPaths)
        {
            var config = DdpmConfig.Load(path);
            if (o.Precision is { } precision) config = config with { Train = config.Train with { Precision = precision } };
            var name = Path.GetFileNameWithoutExtension(path);
            foreach (var batch in o.BatchSizes)
            {
                var (parameters, rates) = MeasureTraining(config with { Train = config.Train with { BatchSize = batch } }, device, o);
                var result = new TrainResult(name, parameters, batch, Median(rates), rates, GpuMemory(device));
                training.Add(result);
                Console.Error.WriteLine(string.Format(inv, "{0}: train batch {1}: {2:F1} img/s (median of {3}){4}", name, batch,
                    result.MedianImagesPerSecond, repeats, result.GpuMemoryAfter is null ? "" : $", GPU memory {result.GpuMemoryAfter}"));
            }
            if (verify) checks.Add($"{name}: " + VerifyTraining(config with { Train = config.Train with { BatchSize = o.BatchSizes[0] } }, device, 20));
            if (sample)
            {
                manual_seed(0);
                using var model = new UNet(config.Model);
                using var generator = new ImageGenerator(model, config, device, config.Train.Precision);
                var ms = MeasureSampling(generator, o);
                if (verify) checks.Add($"{name}: " + VerifySampling(generator, o.SampleBatch));
                double? full = o.SampleFull ? MeasureFullSampling(generator, o.SampleBatch) : null;
                int t = generator.Diffusion.T;
                sampling.Add(new SampleResult(name, o.SampleBatch, Median(ms), ms, o.SampleFull ? t : null, full));
                Console.Error.WriteLine(string.Format(inv, "{0}: sample {1} images: {2:F2} ms/step (median of {3}){4}", name, o.SampleBatch, Median(ms), repeats,
                    full is null ? "" : string.Format(inv, "; all {0} steps: {1:F2} s", t, full)));
            }
        }

        var settings = new Settings("flat", o.Trainer.SyncEveryOn(device), o.Precision is { } p ? EnumNames.Name(p) : "per config",
            device.type == DeviceType.CUDA && Ddpm.Runtime.DevicePolicy.CudnnBenchmarkRequested, GraphsSetting(device));
        var report = new Report(device.type.ToString().ToLowerInvariant(), $"{Environment.MachineName}, {Environment.ProcessorCount} cores",
            get_num_threads(), settings, training, sampling, checks, Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0, GpuMemory(device), DateTimeOffset.UtcNow);

        Console.WriteLine($"device {report.Device} ({report.Machine}, {report.Threads} torch threads{CudaName(device)}); " +
            $"optimizer {settings.Optimizer}, sync every {settings.SyncEvery}, precision {settings.Precision}, cudnn benchmark {(settings.CudnnBenchmark ? "on" : "off")}, " +
            $"cuda graphs {settings.CudaGraphs}");
        Console.WriteLine("| config | params | batch | train img/s (median) | GPU memory after |");
        Console.WriteLine("| --- | ---: | ---: | ---: | ---: |");
        foreach (var t in training)
            Console.WriteLine(string.Format(inv, "| {0} | {1:N0} | {2} | {3:F1} | {4} |", t.Config, t.Parameters, t.Batch, t.MedianImagesPerSecond, t.GpuMemoryAfter ?? "–"));
        if (sampling.Count > 0)
        {
            Console.WriteLine("| config | images | sample ms/step (median) | whole run |");
            Console.WriteLine("| --- | ---: | ---: | ---: |");
            foreach (var s in sampling)
                Console.WriteLine(string.Format(inv, "| {0} | {1} | {2:F2} | {3} |", s.Config, s.Batch, s.MedianMsPerStep,
                    s.FullSeconds is { } f ? string.Format(inv, "{0} steps in {1:F2} s", s.FullSteps, f) : "–"));
        }
        foreach (var check in checks) Console.WriteLine("graphs vs eager: " + check);
        Console.WriteLine(string.Format(inv, "peak RSS {0:F0} MB{1}", report.PeakRssMb, report.PeakGpuMemory is null ? "" : $", GPU memory {report.PeakGpuMemory}"));
        AtomicFile.WriteAllText(outPath, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {outPath}");
        return CliApp.Ok;
    }

    /// <summary>Training steps of the real <see cref="Trainer"/> on one fixed random batch: img/s per repeat.</summary>
    private static (long Parameters, double[] Rates) MeasureTraining(DdpmConfig config, Device device, Options o)
    {
        int batch = config.Train.BatchSize;
        using var trainer = Trainer.Create(config, device, o.Trainer);
        using var generator = new Generator(0, new Device("cpu"));
        var shape = new long[] { batch, config.Model.ImChannels, config.Model.ImSize, config.Model.ImSize };
        using var x0 = (rand(shape, generator: generator) * 2 - 1).to(device);
        using var labels = trainer.Model.IsConditional ? randint(0, config.Model.NumClasses, [batch], generator: generator).to(device) : null;
        // On CUDA with graphs available, the whole step (forward, backward, Adam, EMA) is one graph replay.
        using var graphed = Ddpm.Runtime.CudaGraphs.ReasonNotToUse(device) is null ? GraphedTrainingStep.For(trainer) : null;
        void Steps(int count)
        {
            if (graphed is null)
            {
                for (int i = 0; i < count; i++) trainer.TrainBatch(x0, labels);
                trainer.Synchronize();
            }
            else
            {
                // Like the trainer: losses and flags read once per window.
                using var scope = NewDisposeScope();
                var pending = new List<Tensor>();
                for (int i = 0; i < count; i++)
                {
                    var (loss, applied) = graphed.Run(x0, labels);
                    pending.Add(loss);
                    pending.Add(applied.to(float32));
                }
                stack(pending).cpu();
            }
            Sync(device);
        }
        Steps(o.Warmup);
        if (graphed is not null) Console.Error.WriteLine($"training step (batch {batch}): {graphed.Description}");
        var rates = new double[o.Repeats];
        for (int r = 0; r < o.Repeats; r++)
        {
            var clock = Stopwatch.StartNew();
            Steps(o.Steps);
            rates[r] = batch * o.Steps / clock.Elapsed.TotalSeconds;
        }
        return (trainer.Model.ParameterCount(), rates);
    }

    /// <summary>
    /// Sampling ms/step of <see cref="ImageGenerator"/> (Algorithm 2): <c>o.Warmup</c> untimed steps, then <c>o.Repeats</c>
    /// timed runs of <c>o.Steps</c> steps (the device synchronised at each boundary), stopping the generation by cancellation
    /// when enough steps are measured; a measurement longer than T steps continues in a new generation.
    /// </summary>
    private static double[] MeasureSampling(ImageGenerator generator, Options o)
    {
        var request = new GenerationRequest { Count = o.SampleBatch, MaxBatchSize = o.SampleBatch, Seed = 1 };
        int needed = o.Warmup + o.Repeats * o.Steps, done = 0;
        var ms = new double[o.Repeats];
        var clock = Stopwatch.StartNew();
        while (done < needed)
        {
            using var stop = new CancellationTokenSource();
            try
            {
                using var unused = generator.Generate(request, _ =>
                {
                    done++;
                    int timed = done - o.Warmup;
                    if (timed == 0 || timed > 0 && timed % o.Steps == 0)
                    {
                        Sync(generator.Device);
                        if (timed > 0) ms[timed / o.Steps - 1] = clock.Elapsed.TotalMilliseconds / o.Steps;
                        clock.Restart();
                    }
                    if (done == needed) stop.Cancel();
                }, stop.Token);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
            }
        }
        return ms;
    }

    /// <summary>The sampling forward at t = 500 on one batch of noise, replayed from a CUDA graph and eagerly: the largest difference.</summary>
    private static string VerifySampling(ImageGenerator generator, int batch)
    {
        using var scope = NewDisposeScope();
        using var forward = GraphedForward.Create(generator.Model);
        using var noise = new Generator(3, new Device("cpu"));
        var x = randn([batch, .. generator.ImageShape], generator: noise).to(generator.Device);
        var t = full(batch, 500L, dtype: int64, device: generator.Device);
        using var noGrad = no_grad();
        var graphed = forward.Forward(x, t);
        var eager = generator.Model.forward(x, t);
        return string.Format(CultureInfo.InvariantCulture, "sampling forward ({0} images, t = 500, {1}): max |Δ| {2:E2}, max |ε| {3:F3}",
            batch, forward.Description, (graphed - eager).abs().max().item<float>(), eager.abs().max().item<float>());
    }

    /// <summary>
    /// <paramref name="steps"/> training steps from the same start and batch, eagerly (the trainer) and replayed from a
    /// CUDA graph (<see cref="GraphedTrainingStep"/>): the largest weight difference afterwards, and the Adam step counts.
    /// </summary>
    private static string VerifyTraining(DdpmConfig config, Device device, int steps)
    {
        int batch = config.Train.BatchSize;
        using var eager = Trainer.Create(config, device);
        using var graphedTrainer = Trainer.Create(config, device);
        using var graphed = GraphedTrainingStep.For(graphedTrainer);
        using var generator = new Generator(2, new Device("cpu"));
        var shape = new long[] { batch, config.Model.ImChannels, config.Model.ImSize, config.Model.ImSize };
        using var x0 = (rand(shape, generator: generator) * 2 - 1).to(device);
        using var labels = eager.Model.IsConditional ? randint(0, config.Model.NumClasses, [batch], generator: generator).to(device) : null;
        for (int i = 0; i < steps; i++)
        {
            using var scope = NewDisposeScope();
            eager.TrainBatch(x0, labels);
            graphed.Run(x0, labels);
        }
        eager.Synchronize();
        graphed.WriteBack();
        double maxDiff = 0, maxWeight = 0;
        using (no_grad())
            foreach (var (a, b) in eager.Model.parameters().Zip(graphedTrainer.Model.parameters()))
            {
                maxDiff = Math.Max(maxDiff, (a - b).abs().max().item<float>());
                maxWeight = Math.Max(maxWeight, a.abs().max().item<float>());
            }
        return string.Format(CultureInfo.InvariantCulture, "training, {0} steps at batch {1} ({2}): max |Δweight| {3:E2} (max |weight| {4:F3}), " +
            "Adam steps {5} eager vs {6} graphed", steps, batch, graphed.Description, maxDiff, maxWeight, eager.Flat.Updates, graphedTrainer.Flat.Updates);
    }

    /// <summary>One whole generation of <paramref name="batch"/> images (x_T to x_0, all T steps of Algorithm 2), in seconds.</summary>
    private static double MeasureFullSampling(ImageGenerator generator, int batch)
    {
        using var result = generator.Generate(new GenerationRequest { Count = batch, MaxBatchSize = batch, Seed = 1 });
        return result.Timings.TotalSeconds;
    }

    /// <summary>Whether sampling forwards and training steps replay CUDA graphs, or why not.</summary>
    private static string GraphsSetting(Device device) => Ddpm.Runtime.CudaGraphs.ReasonNotToUse(device) is { } reason ? $"off ({reason})" : "on";

    private static string CudaName(Device device) => device.type == DeviceType.CUDA ? ", " + GpuName() : "";

    /// <summary>The card's name as nvidia-smi reports it.</summary>
    private static string GpuName() =>
        NvidiaSmi("--query-gpu=name --format=csv,noheader") is { Length: > 0 } name ? name.Split('\n')[0] : "GPU name not reported";

    private static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize(device);
    }

    private static double Median(double[] values)
    {
        var sorted = values.OrderBy(v => v).ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }

    /// <summary>
    /// Device memory in use by this process as nvidia-smi reports it (the caching allocator's reserve plus the CUDA
    /// context; TorchSharp exposes no allocator statistics), else the whole card's used memory, marked as such.
    /// </summary>
    private static string? GpuMemory(Device device)
    {
        if (device.type != DeviceType.CUDA) return null;
        var apps = NvidiaSmi("--query-compute-apps=pid,used_memory --format=csv,noheader");
        if (apps is null) return "nvidia-smi unavailable";
        var mine = apps.Split('\n').FirstOrDefault(l => l.StartsWith(Environment.ProcessId + ","));
        if (mine is not null) return mine.Split(',')[1].Trim();
        var total = NvidiaSmi("--query-gpu=memory.used --format=csv,noheader");
        return total is null ? "not reported" : $"{total.Split('\n')[0].Trim()} (whole card)";
    }

    private static string? NvidiaSmi(string arguments)
    {
        try
        {
            var psi = new ProcessStartInfo("nvidia-smi", arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi)!;
            var text = p.StandardOutput.ReadToEnd();
            p.WaitForExit(5000);
            return text.Trim();
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return null;
        }
    }
}
