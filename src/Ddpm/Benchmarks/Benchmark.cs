using System.Diagnostics;
using System.Globalization;
using Ddpm.Configuration;
using Ddpm.Models;
using Ddpm.Runtime;
using Ddpm.Sampling;
using Ddpm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Benchmarks;

/// <summary>
/// Training images/s and sampling ms/step for configs on a device, warm-up excluded, median of repeats: what <c>ddpm
/// train</c> and <c>ddpm sample</c> run (the <see cref="Trainer"/>'s steps, <see cref="ImageGenerator.Generate"/>), on
/// one fixed random batch. Speed targets live here, not in timed tests.
/// </summary>
public static class Benchmark
{
    /// <summary>Measures every config in <paramref name="configs"/> (name, config); <paramref name="log"/> hears each
    /// result.</summary>
    public static BenchmarkReport Run(IReadOnlyList<(string Name, DdpmConfig Config)> configs, BenchmarkOptions o, Device device,
        Action<string>? log = null)
    {
        if (o.BatchSizes.Count == 0 || o.BatchSizes.Any(b => b < 1) || o.Repeats < 1 || o.Steps < 1 || o.Warmup < 0 || o.SampleBatch < 1)
            throw new ArgumentException("batch sizes, repeats, steps and the sample batch must be >= 1, the warm-up >= 0", nameof(o));
        var inv = CultureInfo.InvariantCulture;
        var training = new List<TrainResult>();
        var sampling = new List<SampleResult>();
        var checks = new List<string>();
        bool verify = o.VerifyGraphs && CudaGraphs.ReasonNotToUse(device) is null;
        foreach (var (name, given) in configs)
        {
            var config = o.Precision is { } precision ? given with { Train = given.Train with { Precision = precision } } : given;
            foreach (var batch in o.BatchSizes)
            {
                var (parameters, rates) = MeasureTraining(config with { Train = config.Train with { BatchSize = batch } }, device, o);
                var result = new TrainResult(name, parameters, batch, Median(rates), rates, GpuInfo.Memory(device));
                training.Add(result);
                log?.Invoke(string.Format(inv, "{0}: train batch {1}: {2:F1} img/s (median of {3}){4}", name, batch,
                    result.MedianImagesPerSecond, o.Repeats, result.GpuMemoryAfter is null ? "" : $", GPU memory {result.GpuMemoryAfter}"));
            }
            if (verify) checks.Add($"{name}: " + GraphChecks.Training(config with { Train = config.Train with { BatchSize = o.BatchSizes[0] } }, device, 20));
            if (!o.Sample) continue;
            manual_seed(0);
            using var model = new UNet(config.Model);
            using var generator = new ImageGenerator(model, config, device, config.Train.Precision);
            var ms = MeasureSampling(generator, o);
            if (verify) checks.Add($"{name}: " + GraphChecks.Sampling(generator, o.SampleBatch));
            double? full = o.SampleFull ? MeasureFullSampling(generator, o.SampleBatch) : null;
            int t = generator.Diffusion.T;
            sampling.Add(new SampleResult(name, o.SampleBatch, Median(ms), ms, o.SampleFull ? t : null, full));
            log?.Invoke(string.Format(inv, "{0}: sample {1} images: {2:F2} ms/step (median of {3}){4}", name, o.SampleBatch, Median(ms), o.Repeats,
                full is null ? "" : string.Format(inv, "; all {0} steps: {1:F2} s", t, full)));
        }
        var settings = new BenchmarkSettings("flat", o.Trainer.SyncEveryOn(device), o.Precision is { } p ? EnumNames.Name(p) : "per config",
            device.type == DeviceType.CUDA && DevicePolicy.CudnnBenchmarkRequested,
            CudaGraphs.ReasonNotToUse(device) is { } reason ? $"off ({reason})" : "on (sampling forwards)");
        return new BenchmarkReport(device.type.ToString().ToLowerInvariant(), $"{Environment.MachineName}, {Environment.ProcessorCount} cores",
            get_num_threads(), GpuInfo.Name(device), settings, training, sampling, checks, Process.GetCurrentProcess().PeakWorkingSet64 / 1048576.0,
            GpuInfo.Memory(device), DateTimeOffset.UtcNow);
    }

    /// <summary>Steps of the real <see cref="Trainer"/> (<see cref="Trainer.TrainBatch"/>) on one fixed random batch:
    /// img/s per repeat.</summary>
    private static (long Parameters, double[] Rates) MeasureTraining(DdpmConfig config, Device device, BenchmarkOptions o)
    {
        int batch = config.Train.BatchSize;
        using var trainer = Trainer.Create(config, device, o.Trainer);
        var (x0, labels) = RandomBatch(config, device, seed: 0);
        using (x0)
        using (labels)
        {
            void Steps(int count)
            {
                for (int i = 0; i < count; i++) trainer.TrainBatch(x0, labels);
                trainer.Synchronize();
                Sync(device);
            }
            Steps(o.Warmup);
            var rates = new double[o.Repeats];
            for (int r = 0; r < o.Repeats; r++)
            {
                var clock = Stopwatch.StartNew();
                Steps(o.Steps);
                rates[r] = batch * o.Steps / clock.Elapsed.TotalSeconds;
            }
            return (trainer.Model.ParameterCount(), rates);
        }
    }

    /// <summary>x_0 uniform in [-1, 1] and labels (for a class-conditional model) from a seeded CPU
    /// generator.</summary>
    internal static (Tensor X0, Tensor? Labels) RandomBatch(DdpmConfig config, Device device, long seed)
    {
        using var generator = new Generator((ulong)seed, new Device("cpu"));
        int batch = config.Train.BatchSize;
        var shape = new long[] { batch, config.Model.ImChannels, config.Model.ImSize, config.Model.ImSize };
        using var uniform = rand(shape, generator: generator);
        var x0 = (uniform * 2 - 1).to(device);
        var labels = config.Model.NumClasses > 0 ? randint(0, config.Model.NumClasses, [batch], generator: generator).to(device) : null;
        return (x0, labels);
    }

    /// <summary>
    /// Sampling ms/step of <see cref="ImageGenerator"/> (Algorithm 2): <c>o.Warmup</c> untimed steps, then
    /// <c>o.Repeats</c> timed runs of <c>o.Steps</c> steps (the device synchronised at each boundary), stopping the
    /// generation by cancellation when enough steps are measured; a measurement longer than T steps continues in a new
    /// generation.
    /// </summary>
    private static double[] MeasureSampling(ImageGenerator generator, BenchmarkOptions o)
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

    /// <summary>One whole generation of <paramref name="batch"/> images (x_T to x_0, all T steps of Algorithm 2), in
    /// seconds.</summary>
    private static double MeasureFullSampling(ImageGenerator generator, int batch)
    {
        using var result = generator.Generate(new GenerationRequest { Count = batch, MaxBatchSize = batch, Seed = 1 });
        return result.Timings.TotalSeconds;
    }

    internal static void Sync(Device device)
    {
        if (device.type == DeviceType.CUDA) cuda.synchronize(device);
    }

    internal static double Median(double[] values)
    {
        var sorted = values.Order().ToArray();
        int n = sorted.Length;
        return n % 2 == 1 ? sorted[n / 2] : (sorted[n / 2 - 1] + sorted[n / 2]) / 2;
    }
}
