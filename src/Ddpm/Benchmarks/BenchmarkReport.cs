using System.Globalization;
using Ddpm.Configuration;
using Ddpm.Training;

namespace Ddpm.Benchmarks;

/// <summary>What <see cref="Benchmark.Run"/> measures and how.</summary>
public sealed record BenchmarkOptions
{
    /// <summary>Training batch sizes to measure.</summary>
    public IReadOnlyList<int> BatchSizes { get; init; } = [16];
    /// <summary>Images per sampling step.</summary>
    public int SampleBatch { get; init; } = 100;
    /// <summary>Timed repeats (the median is reported).</summary>
    public int Repeats { get; init; } = 5;
    /// <summary>Steps per repeat.</summary>
    public int Steps { get; init; } = 3;
    /// <summary>Untimed steps first.</summary>
    public int Warmup { get; init; } = 2;
    public TrainerOptions Trainer { get; init; } = new();
    /// <summary>Overrides each config's train_params.precision when set.</summary>
    public Precision? Precision { get; init; }
    /// <summary>Measure sampling at all.</summary>
    public bool Sample { get; init; } = true;
    /// <summary>Also time one whole sampling run (all T steps) per config.</summary>
    public bool SampleFull { get; init; }
    /// <summary>Where CUDA graphs are on, also compare them with eager runs (<see cref="GraphChecks"/>).</summary>
    public bool VerifyGraphs { get; init; }

    /// <summary>
    /// The defaults for <paramref name="device"/>: on CUDA batches of 64 and 256, 10 steps per repeat after 40 untimed
    /// ones (past tier-0 code and cuDNN's autotuning); on the CPU one batch of 16, 3 steps after 2.
    /// </summary>
    public static BenchmarkOptions For(TorchSharp.torch.Device device) => device.type == TorchSharp.DeviceType.CUDA
        ? new() { BatchSizes = [64, 256], Steps = 10, Warmup = 40 }
        : new() { BatchSizes = [16], Steps = 3, Warmup = 2 };
}

public sealed record TrainResult(string Config, long Parameters, int Batch, double MedianImagesPerSecond, double[] ImagesPerSecond,
    string? GpuMemoryAfter);

public sealed record SampleResult(string Config, int Batch, double MedianMsPerStep, double[] MsPerStep, int? FullSteps, double? FullSeconds);

/// <param name="Optimizer">Always <c>flat</c> (<see cref="FlatAdam"/>), so reports compare with older ones.</param>
/// <param name="CudaGraphs">"on (sampling forwards)" when sampling forwards replay CUDA graphs, else "off
/// (why)".</param>
public sealed record BenchmarkSettings(string Optimizer, int SyncEvery, string Precision, bool CudnnBenchmark, string CudaGraphs);

/// <summary>A benchmark's results, as <c>ddpm bench</c> writes them to JSON and prints them as tables.</summary>
public sealed record BenchmarkReport(string Device, string Machine, int Threads, string? Gpu, BenchmarkSettings Settings,
    IReadOnlyList<TrainResult> Training, IReadOnlyList<SampleResult> Sampling, IReadOnlyList<string> GraphChecks, double PeakRssMb,
    string? PeakGpuMemory, DateTimeOffset When)
{
    /// <summary>The report as Markdown: the settings line, a training table, a sampling table, the graph checks, peak
    /// memory.</summary>
    public IEnumerable<string> ToMarkdown()
    {
        var inv = CultureInfo.InvariantCulture;
        var s = Settings;
        yield return $"device {Device} ({Machine}, {Threads} torch threads{(Gpu is null ? "" : ", " + Gpu)}); optimizer {s.Optimizer}, " +
            $"sync every {s.SyncEvery}, precision {s.Precision}, cudnn benchmark {(s.CudnnBenchmark ? "on" : "off")}, cuda graphs {s.CudaGraphs}";
        yield return "| config | params | batch | train img/s (median) | GPU memory after |";
        yield return "| --- | ---: | ---: | ---: | ---: |";
        foreach (var t in Training)
            yield return string.Format(inv, "| {0} | {1:N0} | {2} | {3:F1} | {4} |", t.Config, t.Parameters, t.Batch, t.MedianImagesPerSecond,
                t.GpuMemoryAfter ?? "–");
        if (Sampling.Count > 0)
        {
            yield return "| config | images | sample ms/step (median) | whole run |";
            yield return "| --- | ---: | ---: | ---: |";
            foreach (var r in Sampling)
                yield return string.Format(inv, "| {0} | {1} | {2:F2} | {3} |", r.Config, r.Batch, r.MedianMsPerStep,
                    r.FullSeconds is { } f ? string.Format(inv, "{0} steps in {1:F2} s", r.FullSteps, f) : "–");
        }
        foreach (var check in GraphChecks) yield return "graphs vs eager: " + check;
        yield return string.Format(inv, "peak RSS {0:F0} MB{1}", PeakRssMb, PeakGpuMemory is null ? "" : $", GPU memory {PeakGpuMemory}");
    }
}
