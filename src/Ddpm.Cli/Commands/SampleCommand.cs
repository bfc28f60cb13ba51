using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Ddpm.Configuration;
using Ddpm.Diffusion;
using Ddpm.Distributed;
using Ddpm.IO;
using Ddpm.Imaging;
using Ddpm.Sampling;
using static TorchSharp.torch;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm sample</c>: from a checkpoint to a PNG grid and an animated reverse process, by DPM-Solver++(2M) SDE in 20 steps
/// unless <c>--sampler</c> says otherwise (<c>--sampler ddpm</c> is the seed's Algorithm 2). Under <c>mpirun -n R</c>
/// each rank makes its range of image indices (<see cref="ShardedGeneration"/>) and rank 0 alone writes and reports.
/// </summary>
internal static class SampleCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint")
        {
            Description = "checkpoint written by 'ddpm train' or 'ddpm import', or raw PyTorch weights (.pth state_dict, .safetensors) with --config",
            Required = true,
        };
        var config = WeightOptions.ConfigOption("YAML config giving the architecture of raw weights (required for .pth/.safetensors)");
        var strict = WeightOptions.StrictOption();
        var num = new Option<int?>("--num") { Description = "number of images (default: train_params.num_samples)" };
        var rows = new Option<int?>("--grid-rows") { Description = "images per grid row, as make_grid's nrow (default: train_params.num_grid_rows)" };
        var seed = new Option<long>("--seed") { Description = "sampling seed (image i's noise depends only on the seed and i: the same images at any --batch-size)", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "output directory", DefaultValueFactory = _ => "samples" };
        var saveEvery = new Option<int>("--save-every") { Description = "also write the grid every K steps (0 = only the final grid)", DefaultValueFactory = _ => 0 };
        var frames = new Option<int>("--frames") { Description = "frames of the animated reverse process (reverse.png, APNG; 0 = none)", DefaultValueFactory = _ => 50 };
        var device = CommonOptions.DeviceOption();
        var label = new Option<int?>("--class") { Description = "class label for a class-conditional model (without it, --guidance W gives image i class i mod num_classes)" };
        var guidance = new Option<double>("--guidance") { Description = "classifier-free guidance weight w (ε = (1+w)·ε(y) − w·ε(∅))", DefaultValueFactory = _ => 0.0 };
        var noEma = new Option<bool>("--no-ema") { Description = "use the raw weights even when the checkpoint has an EMA" };
        var allowNonFinite = WeightOptions.AllowNonFiniteOption();
        var precision = CommonOptions.EnumOption("--precision", "fp32, or bf16 (the network in bfloat16, the sampler's arithmetic in float32)", Precision.Fp32, "precision");
        var sampler = new SamplerOptionSet(SamplerOptions.RecommendedKind);
        var batch = new Option<int?>("--batch-size")
        {
            Description = "images per forward pass (default: as many as fit in 4 GiB or half the available memory); the same seed gives the same images at any batch size, " +
                "the intermediate grids and the animation show the first batch",
        };

        var cmd = new Command("sample", "Generate images from a checkpoint (default DPM-Solver++(2M) SDE in 20 steps; Algorithm 2, DDIM, respaced DDPM, DPM-Solver++, UniPC; guidance)")
        {
            checkpoint, config, strict, num, rows, seed, output, saveEvery, frames, device, label, guidance, noEma, precision, batch, allowNonFinite,
        };
        sampler.AddTo(cmd);
        var init = new InitImageOptions();
        init.AddTo(cmd);
        cmd.SetAction(p => Run(p.GetValue(checkpoint)!, p.GetValue(config), p.GetValue(strict), p.GetValue(num), p.GetValue(rows), p.GetValue(seed),
            p.GetValue(output)!, sampler.Read(p), p.GetValue(saveEvery), p.GetValue(frames), CommonOptions.ResolveDevice(p.GetValue(device)),
            p.GetValue(label), p.GetValue(guidance), !p.GetValue(noEma), p.GetValue(precision), p.GetValue(batch), p.GetValue(allowNonFinite),
            init.Read(p)));
        return cmd;
    }

    private static int Run(string checkpointPath, string? configPath, bool strict, int? num, int? gridRows, long seed, string outDir, SamplerOptions samplerOptions,
        int saveEvery, int frames, Device device, int? label, double guidance, bool useEma, Precision precision, int? batchSize, bool allowNonFinite,
        (string Path, double Strength)? init = null)
    {
        if (num is < 1) throw new UsageException($"--num must be >= 1, got {num}");
        if (gridRows is < 1) throw new UsageException($"--grid-rows must be >= 1, got {gridRows}");
        if (saveEvery < 0) throw new UsageException($"--save-every must be >= 0, got {saveEvery}");
        if (frames < 0) throw new UsageException($"--frames must be >= 0, got {frames}");
        if (batchSize is < 1) throw new UsageException($"--batch-size must be >= 1, got {batchSize}");
        PathCheck.EnsureWritableFolder(outDir, "--out"); // before any work: a bad --out must not cost a whole sampling run

        using var generator = ImageGenerator.Load(checkpointPath, device, precision, useEma, WeightOptions.ConfigFor(checkpointPath, configPath), strict,
            allowNonFinite);
        var loaded = generator.Source!;
        WeightOptions.WarnMissing(loaded.MissingKeys);
        WeightOptions.WarnNonFinite(checkpointPath, loaded.NonFiniteTensors);
        var config = loaded.Config;
        int n = num ?? config.Train.NumSamples, perRow = gridRows ?? config.Train.NumGridRows;
        var request = new GenerationRequest
        {
            Count = n,
            Seed = seed,
            Sampler = samplerOptions,
            // Without --class, guidance gives image i class i mod num_classes (as ddpm eval --guidance): with as many
            // images per grid row as classes, every column holds one digit.
            Labels = label is { } y ? Enumerable.Repeat(y, n).ToArray()
                : guidance != 0 ? Enumerable.Range(0, n).Select(i => i % Math.Max(1, config.Model.NumClasses)).ToArray()
                : null,
            Guidance = guidance,
        };
        request = InitImageOptions.Apply(init, request, generator);
        // Without --batch-size, as many images per pass as fit in 4 GiB or half the available memory (all of them when they fit).
        long? available = device.type == TorchSharp.DeviceType.CPU ? Training.MemoryEstimate.AvailableCpuBytes() : null;
        request = request with { MaxBatchSize = batchSize ?? generator.BatchSizeWithin(n, Math.Min((available ?? 8L << 30) / 2, 4L << 30), request.Labels is not null && guidance != 0) };
        GenerationPlan plan;
        try { plan = generator.Plan(request); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        EnsureFits(plan, n, config.Model.ImSize, available, batchSize is not null);
        // mpirun (only): the images split by index over the ranks; rank 0 writes and reports, the others stay silent.
        var mpi = MpiCommunicator.Current is { Size: > 1 } job ? job : null;
        bool root = mpi is null || mpi.Rank == 0;
        if (root && guidance > 0 && generator.Model.IsConditional && config.Train.LabelDropout <= 0)
            Console.Error.WriteLine("warning: the model was trained without label dropout (train_params.label_dropout = 0), so its unconditional ε is untrained and guidance may not help");
        if (root)
        {
            Directory.CreateDirectory(outDir);
            RemoveEarlierOutputs(outDir);
        }

        // Intermediate grids and animation frames show the first batch (all images unless --batch-size is smaller; rank
        // 0's first batch under mpirun).
        int steps = plan.Timesteps.Count;
        int frameEvery = frames > 0 ? Math.Max(1, steps / frames) : 0;
        var animation = new List<byte[]>();
        var progress = new ProgressLine();
        var clock = Stopwatch.StartNew();
        // Ctrl+C or SIGTERM stops between steps with a message saying what --out holds (a second Ctrl+C ends the process at once).
        using var cancel = new CancellationTokenSource();
        int exitCode = 130; // as train: 128 + the signal's number
        using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = !cancel.IsCancellationRequested; cancel.Cancel(); });
        using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; exitCode = 143; cancel.Cancel(); });
        long lastStep = 0;
        int written = 0;
        Action<GenerationStep>? onStep = root ? s =>
        {
            lastStep = s.Done;
            int done = s.Index + 1;
            if (s.Batch == 0 && frameEvery > 0 && (done % frameEvery == 0 || done == steps || done == 1))
                animation.Add(ImageGrid.ToPng(s.X, perRow));
            if (s.Batch == 0 && saveEvery > 0 && done % saveEvery == 0 && done != steps)
            {
                ImageGrid.SavePng(s.X, perRow, Path.Combine(outDir, $"x_{s.Timestep:D4}.png"));
                written++;
            }
            double perStep = clock.Elapsed.TotalSeconds / s.Done;
            progress.Update(s.Done, s.Total, string.Create(CultureInfo.InvariantCulture, $"t={s.Timestep} {perStep * 1000:F0} ms/step"),
                TimeSpan.FromSeconds(perStep * (s.Total - s.Done)));
        } : null;
        GenerationResult result;
        try
        {
            result = mpi is null ? generator.Generate(request, onStep, cancel.Token) : ShardedGeneration.Generate(generator, request, mpi, onStep, cancel.Token);
        }
        catch (OperationCanceledException)
        {
            if (!root) return exitCode;
            progress.Finish();
            Console.Error.WriteLine($"error: sampling interrupted after step {lastStep} of {plan.TotalSteps}: no samples.png was written; " +
                (written > 0 ? $"'{outDir}' holds only this run's {written} intermediate grid(s) x_*.png" : $"'{outDir}' holds nothing of this run"));
            return exitCode;
        }
        using var _ = result;
        if (!root) return CliApp.Ok;
        progress.Finish();
        var gridPath = Path.Combine(outDir, "samples.png");
        ImageGrid.SavePng(result.Images, perRow, gridPath);
        if (animation.Count > 0) AtomicFile.WriteAllBytes(Path.Combine(outDir, "reverse.png"), AnimatedPng.Assemble(animation));
        var manifest = loaded.Manifest;
        var origin = manifest is null ? $"{loaded.Format} weights" : $"epoch {manifest.Epoch}, step {manifest.Step}";
        var t = result.Timings;
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"sampled {n} images{(mpi is null ? "" : $" over {mpi.Size} processes")} in {steps} steps of {samplerOptions.Describe(generator.Diffusion.Schedule.T)}{(plan.Batches > 1 ? $" × {plan.Batches} batches" : "")}, " +
            $"{(mpi is null ? t.TotalSeconds : clock.Elapsed.TotalSeconds):F1} s ({t.MillisecondsPerStep:F1} ms/step{(mpi is null ? "" : " on rank 0")}) " +
            $"from {checkpointPath} ({origin}, {(generator.UsesEma ? "EMA weights" : "raw weights")}{(precision == Precision.Bf16 ? ", bf16" : "")})"));
        Console.WriteLine(gridPath);
        return CliApp.Ok;
    }

    /// <summary>
    /// Refuses, before anything is allocated, a request whose images (kept until the grid is written, and the grid itself)
    /// plus one batch's working set exceed the available memory.
    /// </summary>
    private static void EnsureFits(GenerationPlan plan, int n, int imSize, long? available, bool batchGiven)
    {
        if (available is not { } free) return;
        long grid = (long)n * (imSize + 2) * (imSize + 2) * 4;
        long need = plan.Memory.OutputBytes + grid + plan.Memory.DeviceBytes;
        if (need > free)
            throw new InsufficientMemoryException(string.Create(CultureInfo.InvariantCulture,
                $"--num {n}{(batchGiven ? $" --batch-size {plan.BatchSize}" : "")}: sampling needs an estimated {Gib(need)} " +
                $"({Gib(plan.Memory.OutputBytes + grid)} for the images and their grid, {Gib(plan.Memory.DeviceBytes)} for a batch of {plan.BatchSize}) " +
                $"but {Gib(free)} of memory is available; ask for fewer images{(batchGiven ? " or a smaller --batch-size" : "")}"));
    }

    private static string Gib(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F2} GiB");

    /// <summary>
    /// Removes what an earlier <c>ddpm sample</c> left in <paramref name="outDir"/> (samples.png, reverse.png, x_NNNN.png), so
    /// the folder never mixes two runs (e.g. this run's intermediate grids beside an older final grid), and says so.
    /// </summary>
    private static void RemoveEarlierOutputs(string outDir)
    {
        var earlier = Directory.EnumerateFiles(outDir)
            .Where(f => Path.GetFileName(f) is "samples.png" or "reverse.png" || IsIntermediateGrid(Path.GetFileName(f)))
            .Order(StringComparer.Ordinal).ToList();
        if (earlier.Count == 0) return;
        foreach (var f in earlier) File.Delete(f);
        Console.Error.WriteLine($"note: removed {earlier.Count} file(s) of an earlier sample from '{outDir}': " +
            string.Join(", ", earlier.Take(5).Select(Path.GetFileName)) + (earlier.Count > 5 ? ", …" : ""));
    }

    private static bool IsIntermediateGrid(string name) =>
        name.Length == "x_0000.png".Length && name.StartsWith("x_", StringComparison.Ordinal) && name.EndsWith(".png", StringComparison.Ordinal)
        && name[2..6].All(char.IsAsciiDigit);
}
