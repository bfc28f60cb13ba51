using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Text.Json;
using Ddpm.Configuration;
using Ddpm.Diffusion;
using Ddpm.Models;
using Ddpm.Sampling;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm bench</c>: training images/s and sampling ms/step for configs on a device, warm-up excluded, median of
/// repeats, as a table and JSON. Speed targets live here, not in timed tests.
/// </summary>
internal static class BenchCommand
{
    public sealed record TrainResult(string Config, long Parameters, int Batch, double MedianImagesPerSecond, double[] ImagesPerSecond);
    public sealed record SampleResult(string Config, int Batch, double MedianMsPerStep, double[] MsPerStep);
    public sealed record Report(string Device, string Machine, int Threads, IReadOnlyList<TrainResult> Training,
        IReadOnlyList<SampleResult> Sampling, double PeakRssMb, string? PeakGpuMemory, DateTimeOffset When);

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
        var steps = new Option<int>("--steps") { Description = "steps per repeat", DefaultValueFactory = _ => 3 };
        var warmup = new Option<int>("--warmup") { Description = "untimed steps first", DefaultValueFactory = _ => 2 };
        var output = new Option<string>("--out") { Description = "JSON report path", DefaultValueFactory = _ => "bench.json" };
        var noSample = new Option<bool>("--no-sample") { Description = "skip the sampling measurement" };
        var device = CommonOptions.DeviceOption();
        var cmd = new Command("bench", "Measure training img/s and sampling ms/step (median of repeats, warm-up excluded)")
        {
            configs, batches, sampleBatch, repeats, steps, warmup, output, noSample, device,
        };
        cmd.SetAction(p =>
        {
            var dev = CommonOptions.ResolveDevice(p.GetValue(device)!);
            var paths = p.GetValue(configs) is { Length: > 0 } given ? given : ["configs/mnist.yaml", "configs/quick.yaml"];
            var sizes = ParseSizes(p.GetValue(batches), dev);
            int r = p.GetValue(repeats), s = p.GetValue(steps), w = p.GetValue(warmup), sb = p.GetValue(sampleBatch);
            if (r < 1 || s < 1 || w < 0 || sb < 1) throw new UsageException("--repeats, --steps and --sample-batch must be >= 1, --warmup >= 0");
            return Run(paths, sizes, sb, r, s, w, dev, p.GetValue(output)!, !p.GetValue(noSample));
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

    private static int Run(string[] configPaths, int[] batchSizes, int sampleBatch, int repeats, int steps, int warmup,
        Device device, string outPath, bool sample)
    {
        var inv = CultureInfo.InvariantCulture;
        var training = new List<TrainResult>();
        var sampling = new List<SampleResult>();
        foreach (var path in configPaths)
        {
            var config = DdpmConfig.Load(path);
            var name = Path.GetFileNameWithoutExtension(path);
            manual_seed(0);
            using var model = new UNet(config.Model);
            model.to(device);
            var diffusion = GaussianDiffusion.FromOptions(config.Diffusion);
            foreach (var batch in batchSizes)
            {
                var rates = MeasureTraining(model, diffusion, config, batch, device, repeats, steps, warmup);
                var result = new TrainResult(name, model.ParameterCount(), batch, Median(rates), rates);
                training.Add(result);
                Console.Error.WriteLine(string.Format(inv, "{0}: train batch {1}: {2:F1} img/s (median of {3})", name, batch, result.MedianImagesPerSecond, repeats));
            }
            if (sample)
            {
                var ms = MeasureSampling(model, diffusion, config, sampleBatch, device, repeats, steps, warmup);
                sampling.Add(new SampleResult(name, sampleBatch, Median(ms), ms));
                Console.Error.WriteLine(string.Format(inv, "{0}: sample {1} images: {2:F1} ms/step (median of {3})", name, sampleBatch, Median(ms), repeats));
            }
        }

        var report = new Report(device.type.ToString().ToLowerInvariant(), $"{Environment.MachineName}, {Environment.ProcessorCount} cores",
            get_num_threads(), training, sampling, Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0, GpuMemory(device), DateTimeOffset.UtcNow);

        Console.WriteLine($"device {report.Device} ({report.Machine}, {report.Threads} torch threads)");
        Console.WriteLine("| config | params | batch | train img/s (median) |");
        Console.WriteLine("| --- | ---: | ---: | ---: |");
        foreach (var t in training)
            Console.WriteLine(string.Format(inv, "| {0} | {1:N0} | {2} | {3:F1} |", t.Config, t.Parameters, t.Batch, t.MedianImagesPerSecond));
        if (sampling.Count > 0)
        {
            Console.WriteLine("| config | images | sample ms/step (median) |");
            Console.WriteLine("| --- | ---: | ---: |");
            foreach (var s in sampling)
                Console.WriteLine(string.Format(inv, "| {0} | {1} | {2:F1} |", s.Config, s.Batch, s.MedianMsPerStep));
        }
        Console.WriteLine(string.Format(inv, "peak RSS {0:F0} MB{1}", report.PeakRssMb, report.PeakGpuMemory is null ? "" : $", GPU memory {report.PeakGpuMemory}"));
        File.WriteAllText(outPath, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
        Console.WriteLine($"wrote {outPath}");
        return CliApp.Ok;
    }

    private static double[] MeasureTraining(UNet model, GaussianDiffusion diffusion, DdpmConfig config, int batch, Device device,
        int repeats, int steps, int warmup)
    {
        model.train();
        using var optimizer = optim.Adam(model.parameters(), config.Train.Lr);
        using var generator = new Generator(0, new Device("cpu"));
        var shape = new long[] { batch, config.Model.ImChannels, config.Model.ImSize, config.Model.ImSize };
        using var x0 = (rand(shape, generator: generator) * 2 - 1).to(device);
        void Step()
        {
            using var scope = NewDisposeScope();
            optimizer.zero_grad();
            var loss = diffusion.TrainingLoss((xt, t) => model.forward(xt, t), x0, generator);
            loss.backward();
            optimizer.step();
        }
        for (int i = 0; i < warmup; i++) Step();
        Sync(device);
        var rates = new double[repeats];
        for (int r = 0; r < repeats; r++)
        {
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < steps; i++) Step();
            Sync(device);
            rates[r] = batch * steps / clock.Elapsed.TotalSeconds;
        }
        return rates;
    }

    private static double[] MeasureSampling(UNet model, GaussianDiffusion diffusion, DdpmConfig config, int batch, Device device,
        int repeats, int steps, int warmup)
    {
        model.eval();
        var sampler = new DdpmSampler(diffusion);
        using var noGrad = no_grad();
        using var generator = new Generator(1, new Device("cpu"));
        var x = randn(new long[] { batch, config.Model.ImChannels, config.Model.ImSize, config.Model.ImSize }, generator: generator).to(device);
        var stepGenerator = device.type == DeviceType.CPU ? generator : null;
        int index = 0;
        void Step()
        {
            using var scope = NewDisposeScope();
            int t = sampler.Timesteps[index % sampler.Timesteps.Count];
            var next = sampler.Step(model.forward(x, full(batch, (long)t, dtype: int64, device: device)), index % sampler.Timesteps.Count, x, stepGenerator);
            next.MoveToOuterDisposeScope();
            x.Dispose();
            x = next;
            index++;
        }
        for (int i = 0; i < warmup; i++) Step();
        Sync(device);
        var ms = new double[repeats];
        for (int r = 0; r < repeats; r++)
        {
            var clock = Stopwatch.StartNew();
            for (int i = 0; i < steps; i++) Step();
            Sync(device);
            ms[r] = clock.Elapsed.TotalMilliseconds / steps;
        }
        x.Dispose();
        return ms;
    }

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

    /// <summary>Device memory in use by this process as nvidia-smi reports it (TorchSharp exposes no allocator statistics).</summary>
    private static string? GpuMemory(Device device)
    {
        if (device.type != DeviceType.CUDA) return null;
        try
        {
            var psi = new ProcessStartInfo("nvidia-smi", $"--query-compute-apps=pid,used_memory --format=csv,noheader")
            {
                RedirectStandardOutput = true, RedirectStandardError = true,
            };
            using var p = Process.Start(psi)!;
            var text = p.StandardOutput.ReadToEnd();
            p.WaitForExit(5000);
            var mine = text.Split('\n').FirstOrDefault(l => l.StartsWith(Environment.ProcessId + ","));
            return mine?.Split(',')[1].Trim() ?? "not reported";
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return "nvidia-smi unavailable";
        }
    }
}
