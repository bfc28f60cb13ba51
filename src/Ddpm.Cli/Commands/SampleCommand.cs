using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using Ddpm.Configuration;
using Ddpm.Diffusion;
using Ddpm.Imaging;
using Ddpm.Interop;
using Ddpm.Sampling;
using Ddpm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Cli.Commands;

/// <summary><c>ddpm sample</c>: Algorithm 2 from a checkpoint to a PNG grid and an animated reverse process.</summary>
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
        var seed = new Option<long>("--seed") { Description = "sampling seed (same seed → same images on CPU)", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "output directory", DefaultValueFactory = _ => "samples" };
        var sigma = new Option<string>("--sigma") { Description = "reverse variance σ_t²: beta-tilde (the seed's) or beta", DefaultValueFactory = _ => "beta-tilde" };
        sigma.AcceptOnlyFromAmong("beta-tilde", "beta");
        var clip = new Option<bool>("--clip-x0") { Description = "clip the predicted x_0 to [-1, 1] and use the posterior mean" };
        var saveEvery = new Option<int>("--save-every") { Description = "also write the grid every K steps (0 = only the final grid)", DefaultValueFactory = _ => 0 };
        var frames = new Option<int>("--frames") { Description = "frames of the animated reverse process (reverse.png, APNG; 0 = none)", DefaultValueFactory = _ => 50 };
        var device = CommonOptions.DeviceOption();
        var samplerKind = new Option<string>("--sampler") { Description = "ddpm (ancestral, Algorithm 2) or ddim", DefaultValueFactory = _ => "ddpm" };
        samplerKind.AcceptOnlyFromAmong("ddpm", "ddim");
        var steps = new Option<int?>("--steps") { Description = "reverse steps S ≤ T (default T; ddpm with S < T is respaced)" };
        var eta = new Option<double>("--eta") { Description = "DDIM η in [0, 1] (0 = deterministic)", DefaultValueFactory = _ => 0.0 };
        var spacing = new Option<string>("--spacing") { Description = "timestep sub-sequence: uniform or quadratic", DefaultValueFactory = _ => "uniform" };
        spacing.AcceptOnlyFromAmong("uniform", "quadratic");
        var label = new Option<int?>("--class") { Description = "class label for a class-conditional model" };
        var guidance = new Option<double>("--guidance") { Description = "classifier-free guidance weight w (ε = (1+w)·ε(y) − w·ε(∅))", DefaultValueFactory = _ => 0.0 };
        var noEma = new Option<bool>("--no-ema") { Description = "use the raw weights even when the checkpoint has an EMA" };
        var precision = new Option<string>("--precision") { Description = "fp32, or bf16 (the network in bfloat16, the sampler's arithmetic in float32)", DefaultValueFactory = _ => "fp32" };

        var cmd = new Command("sample", "Generate images from a checkpoint (Algorithm 2, DDIM, respaced DDPM, guidance)")
        {
            checkpoint, config, strict, num, rows, seed, output, sigma, clip, saveEvery, frames, device, samplerKind, steps, eta, spacing, label, guidance, noEma, precision,
        };
        cmd.SetAction(p =>
        {
            var options = new SamplerOptions
            {
                Kind = p.GetValue(samplerKind) == "ddim" ? SamplerKind.Ddim : SamplerKind.Ddpm,
                Steps = p.GetValue(steps),
                Eta = p.GetValue(eta),
                Spacing = p.GetValue(spacing) == "quadratic" ? SpacingKind.Quadratic : SpacingKind.Uniform,
                Variance = p.GetValue(sigma) == "beta" ? VarianceKind.Beta : VarianceKind.BetaTilde,
                ClipX0 = p.GetValue(clip),
            };
            return Run(p.GetValue(checkpoint)!, p.GetValue(config), p.GetValue(strict), p.GetValue(num), p.GetValue(rows), p.GetValue(seed), p.GetValue(output)!,
                options, p.GetValue(saveEvery), p.GetValue(frames), CommonOptions.ResolveDevice(p.GetValue(device)!),
                p.GetValue(label), p.GetValue(guidance), !p.GetValue(noEma), p.GetValue(precision)!);
        });
        return cmd;
    }

    private static int Run(string checkpointPath, string? configPath, bool strict, int? num, int? gridRows, long seed, string outDir, SamplerOptions samplerOptions,
        int saveEvery, int frames, Device device, int? label, double guidance, bool useEma, string precision = "fp32")
    {
        if (!PrecisionNames.TryParse(precision, out var parsedPrecision))
            throw new UsageException($"--precision: unknown precision '{precision}' (expected fp32 or bf16)");
        bool bf16 = parsedPrecision == Precision.Bf16;
        if (num is < 1) throw new UsageException($"--num must be >= 1, got {num}");
        if (gridRows is < 1) throw new UsageException($"--grid-rows must be >= 1, got {gridRows}");
        if (saveEvery < 0) throw new UsageException($"--save-every must be >= 0, got {saveEvery}");
        if (frames < 0) throw new UsageException($"--frames must be >= 0, got {frames}");

        if (guidance < 0 || !double.IsFinite(guidance)) throw new UsageException($"--guidance must be a finite number >= 0, got {guidance}");
        using var loaded = WeightOptions.Load(checkpointPath, configPath, strict);
        var (model, config, manifest) = (loaded.Model, loaded.Config, loaded.Manifest);
        string weights = "raw weights";
        if (useEma && manifest is not null && Checkpoint.HasEma(checkpointPath))
        {
            Checkpoint.LoadEmaInto(checkpointPath, model);
            weights = "EMA weights";
        }
        model.to(device).eval();
        if (bf16) model.to(ScalarType.BFloat16); // float32 in and out; the network runs in bfloat16
        int n = num ?? config.Train.NumSamples, perRow = gridRows ?? config.Train.NumGridRows;
        var diffusion = GaussianDiffusion.FromOptions(config.Diffusion);
        ISampler sampler;
        try { sampler = samplerOptions.Create(diffusion.Schedule); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }

        NoisePredictor predictor = diffusion.AsEpsPredictor((x, t) => model.forward(x, t));
        if (label is { } y)
        {
            if (!model.IsConditional)
                throw new UsageException($"--class {y}: the checkpoint's model is unconditional (model_params.num_classes = 0)");
            if (y < 0 || y >= config.Model.NumClasses)
                throw new UsageException($"--class {y}: the model was trained on classes 0..{config.Model.NumClasses - 1}");
            if (guidance > 0 && config.Train.LabelDropout <= 0)
                Console.Error.WriteLine("warning: the model was trained without label dropout (train_params.label_dropout = 0), so its unconditional ε is untrained and guidance may not help");
            var labels = full(n, (long)y, dtype: int64, device: device);
            predictor = ClassifierFreeGuidance.Guided(model, labels, guidance, diffusion.EpsFromOutput);
        }
        else if (guidance != 0)
        {
            throw new UsageException("--guidance needs --class");
        }
        Directory.CreateDirectory(outDir);

        int steps = sampler.Timesteps.Count;
        int frameEvery = frames > 0 ? Math.Max(1, steps / frames) : 0;
        var animation = new List<byte[]>();
        var progress = new ProgressLine();
        var clock = Stopwatch.StartNew();
        using var generator = new Generator((ulong)seed, new Device("cpu"));
        var shape = new long[] { n, config.Model.ImChannels, config.Model.ImSize, config.Model.ImSize };
        // x_T is drawn on the CPU from the seeded generator, so the same seed gives the same images on any device.
        var xT = randn(shape, dtype: float32, generator: generator).to(device);
        // On the GPU the per-step noise comes from the device's default generator, seeded here.
        if (device.type == DeviceType.CUDA) cuda.manual_seed(seed);
        var generatorForSteps = device.type == DeviceType.CPU ? generator : null;
        using var result = SamplingLoop.Run(sampler, predictor, xT, generatorForSteps, (i, t, x) =>
        {
            int done = i + 1;
            if (frameEvery > 0 && (done % frameEvery == 0 || done == steps) || done == 1 && frameEvery > 0)
                animation.Add(ImageGrid.ToPng(x, perRow));
            if (saveEvery > 0 && (done % saveEvery == 0 && done != steps))
                ImageGrid.SavePng(x, perRow, Path.Combine(outDir, $"x_{t:D4}.png"));
            double perStep = clock.Elapsed.TotalSeconds / done;
            progress.Update(done, steps, string.Create(CultureInfo.InvariantCulture, $"t={t} {perStep * 1000:F0} ms/step"),
                TimeSpan.FromSeconds(perStep * (steps - done)));
        });
        progress.Finish();
        var gridPath = Path.Combine(outDir, "samples.png");
        ImageGrid.SavePng(result, perRow, gridPath);
        if (animation.Count > 0) AtomicFile.WriteAllBytes(Path.Combine(outDir, "reverse.png"), AnimatedPng.Assemble(animation));
        var origin = manifest is null ? $"{loaded.Format} weights" : $"epoch {manifest.Epoch}, step {manifest.Step}";
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"sampled {n} images in {steps} {samplerOptions.Kind.ToString().ToUpperInvariant()} steps, {clock.Elapsed.TotalSeconds:F1} s ({clock.Elapsed.TotalMilliseconds / steps:F1} ms/step) " +
            $"from {checkpointPath} ({origin}, {weights}{(bf16 ? ", bf16" : "")})"));
        Console.WriteLine(gridPath);
        return CliApp.Ok;
    }
}
