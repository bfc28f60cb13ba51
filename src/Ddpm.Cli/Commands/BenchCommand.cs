using System.CommandLine;
using System.Text.Json;
using Ddpm.Benchmarks;
using Ddpm.Configuration;
using Ddpm.IO;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Cli.Commands;

/// <summary><c>ddpm bench</c>: parses the options, runs <see cref="Benchmark.Run"/>, prints its tables and writes its JSON.</summary>
internal static class BenchCommand
{
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
        var warmup = new Option<int?>("--warmup") { Description = "untimed steps first (default 2 on cpu; 40 on cuda, past tier-0 code and cuDNN's autotuning)" };
        var output = new Option<string>("--out") { Description = "JSON report path", DefaultValueFactory = _ => "bench.json" };
        var noSample = new Option<bool>("--no-sample") { Description = "skip the sampling measurement" };
        var sampleFull = new Option<bool>("--sample-full") { Description = "also time one whole sampling run (all T steps) per config" };
        var verifyGraphs = new Option<bool>("--verify-graphs") { Description = "with CUDA graphs on (DDPM_CUDA_GRAPHS=1): compare graphed with eager runs (max |Δ|)" };
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
            bool onGpu = dev.type == TorchSharp.DeviceType.CUDA;
            var options = new BenchmarkOptions
            {
                BatchSizes = ParseSizes(p.GetValue(batches), onGpu), SampleBatch = p.GetValue(sampleBatch), Repeats = p.GetValue(repeats),
                Steps = p.GetValue(steps) ?? (onGpu ? 10 : 3), Warmup = p.GetValue(warmup) ?? (onGpu ? 40 : 2),
                Trainer = new TrainerOptions { SyncEvery = p.GetValue(syncEvery) }, Precision = p.GetValue(precision),
                Sample = !p.GetValue(noSample), SampleFull = p.GetValue(sampleFull), VerifyGraphs = p.GetValue(verifyGraphs),
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
        return cmd;
    }

    private static int[] ParseSizes(string? text, bool onGpu)
    {
        if (text is null) return onGpu ? [64, 256] : [16];
        try
        {
            var sizes = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(int.Parse).ToArray();
            return sizes.Length > 0 && sizes.All(b => b >= 1) ? sizes : throw new FormatException();
        }
        catch (FormatException)
        {
            throw new UsageException($"--batch-sizes: expected positive integers like 64,256, got '{text}'");
        }
        catch (OverflowException)
        {
            throw new UsageException($"--batch-sizes: expected positive integers like 64,256, got '{text}'");
        }
    }
}
