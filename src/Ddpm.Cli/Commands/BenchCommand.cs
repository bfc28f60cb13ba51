using System.Text.Json;
using Ddpm.Benchmarks;
using Ddpm.IO;
using Ddpm.Training;

namespace Ddpm.Cli.Commands;

/// <summary><c>ddpm bench</c>: runs <see cref="Benchmark.Run"/>, prints its tables and writes its JSON.</summary>
internal static class BenchCommand
{
    public static Command Create()
    {
        var configs = Opt<string[]>("--config", "configs to measure (repeatable; default configs/mnist.yaml and configs/quick.yaml)");
        configs.AllowMultipleArgumentsPerToken = true;
        var batches = Opt<string?>("--batch-sizes", "training batch sizes, comma-separated (default: 16 on cpu, 64,256 on cuda)");
        var sampleBatch = Opt("--sample-batch", "images per sampling step", 100);
        var repeats = Opt("--repeats", "timed repeats (the median is reported)", 5);
        var steps = Opt<int?>("--steps", "steps per repeat (default 3 on cpu, 10 on cuda)");
        var warmup = Opt<int?>("--warmup", "untimed steps first (default 2 on cpu; 40 on cuda, past tier-0 code and cuDNN's autotuning)");
        var output = Opt("--out", "JSON report path", "bench.json");
        var noSample = Opt<bool>("--no-sample", "skip the sampling measurement");
        var sampleFull = Opt<bool>("--sample-full", "also time one whole sampling run (all T steps) per config");
        var verifyGraphs = Opt<bool>("--verify-graphs", "with CUDA graphs on (DDPM_CUDA_GRAPHS=1): compare graphed with eager runs (max |Δ|)");
        var syncEvery = Opt<int?>("--sync-every", "steps between host reads of the loss (default: the trainer's, 1 on cpu, 50 on cuda)");
        var precision = OptionalEnumOption<Precision>("--precision", "fp32 or bf16 (default: each config's train_params.precision)", "precision");
        var device = DeviceOption();
        return Cmd("bench", "Measure training img/s and sampling ms/step (median of repeats, warm-up excluded)",
            [configs, batches, sampleBatch, repeats, steps, warmup, output, noSample, sampleFull, verifyGraphs, syncEvery, precision, device], p =>
        {
            var dev = ResolveDevice(p.GetValue(device)!);
            var defaults = BenchmarkOptions.For(dev);
            var options = defaults with
            {
                BatchSizes = ParseSizes(p.GetValue(batches)) ?? defaults.BatchSizes, SampleBatch = p.GetValue(sampleBatch), Repeats = p.GetValue(repeats),
                Steps = p.GetValue(steps) ?? defaults.Steps, Warmup = p.GetValue(warmup) ?? defaults.Warmup, Precision = p.GetValue(precision),
                Trainer = new TrainerOptions { SyncEvery = p.GetValue(syncEvery) }, Sample = !p.GetValue(noSample), SampleFull = p.GetValue(sampleFull),
                VerifyGraphs = p.GetValue(verifyGraphs),
            };
            var paths = p.GetValue(configs) is { Length: > 0 } given ? given : ["configs/mnist.yaml", "configs/quick.yaml"];
            var named = paths.Select(c => (Path.GetFileNameWithoutExtension(c), DdpmConfig.Load(c))).ToList();
            BenchmarkReport report;
            try { report = Benchmark.Run(named, options, dev, Console.Error.WriteLine); }
            catch (ArgumentException e) when (e.ParamName == "o") { throw new UsageException(e.Message); }
            foreach (var line in report.ToMarkdown()) Console.WriteLine(line);
            var outPath = p.GetValue(output)!;
            AtomicFile.WriteAllText(outPath, JsonSerializer.Serialize(report, new JsonSerializerOptions { WriteIndented = true }));
            Console.WriteLine($"wrote {outPath}");
            return CliApp.Ok;
        });
    }

    /// <summary>"64,256" as sizes (null when not given); anything but positive integers is a usage error.</summary>
    private static int[]? ParseSizes(string? text)
    {
        if (text is null) return null;
        var parts = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var sizes = parts.Select(t => int.TryParse(t, out var b) && b >= 1 ? b : 0).ToArray();
        return sizes.Length > 0 && sizes.All(b => b >= 1) ? sizes : throw new UsageException($"--batch-sizes: expected positive integers like 64,256, got '{text}'");
    }
}
