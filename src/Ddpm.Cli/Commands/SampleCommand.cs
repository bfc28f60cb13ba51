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

        var cmd = new Command("sample", "Generate images from a checkpoint (Algorithm 2)")
        {
            checkpoint, config, strict, num, rows, seed, output, sigma, clip, saveEvery, frames, device,
        };
        cmd.SetAction(p => Run(p.GetValue(checkpoint)!, p.GetValue(config), p.GetValue(strict), p.GetValue(num), p.GetValue(rows), p.GetValue(seed), p.GetValue(output)!,
            p.GetValue(sigma) == "beta" ? VarianceKind.Beta : VarianceKind.BetaTilde, p.GetValue(clip), p.GetValue(saveEvery),
            p.GetValue(frames), CommonOptions.ResolveDevice(p.GetValue(device)!)));
        return cmd;
    }

    private static int Run(string checkpointPath, string? configPath, bool strict, int? num, int? gridRows, long seed, string outDir, VarianceKind variance,
        bool clipX0, int saveEvery, int frames, Device device)
    {
        if (num is < 1) throw new UsageException($"--num must be >= 1, got {num}");
        if (gridRows is < 1) throw new UsageException($"--grid-rows must be >= 1, got {gridRows}");
        if (saveEvery < 0) throw new UsageException($"--save-every must be >= 0, got {saveEvery}");
        if (frames < 0) throw new UsageException($"--frames must be >= 0, got {frames}");

        using var loaded = WeightOptions.Load(checkpointPath, configPath, strict);
        var (model, config, manifest) = (loaded.Model, loaded.Config, loaded.Manifest);
        model.to(device).eval();
        int n = num ?? config.Train.NumSamples, perRow = gridRows ?? config.Train.NumGridRows;
        var diffusion = new GaussianDiffusion(NoiseSchedule.FromOptions(config.Diffusion));
        var sampler = new DdpmSampler(diffusion, variance, clipX0);
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
        var generatorForSteps = device.type == DeviceType.CPU ? generator : null;
        using var result = SamplingLoop.Run(sampler, (x, t) => model.forward(x, t), xT, generatorForSteps, (i, t, x) =>
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
            $"sampled {n} images in {steps} steps, {clock.Elapsed.TotalSeconds:F1} s ({clock.Elapsed.TotalMilliseconds / steps:F1} ms/step) " +
            $"from {checkpointPath} ({origin})"));
        Console.WriteLine(gridPath);
        return CliApp.Ok;
    }
}
