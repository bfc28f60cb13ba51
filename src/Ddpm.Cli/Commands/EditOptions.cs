using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Ddpm.Data;
using Ddpm.Imaging;
using Ddpm.IO;
using Ddpm.Sampling;
using static TorchSharp.torch;

namespace Ddpm.Cli.Commands;

/// <summary>
/// What the edit commands (<c>inpaint</c>, <c>interpolate</c>) share with <c>ddpm sample</c>: the weights, seed,
/// device and guidance options spelled as sample spells them, the sampler options (<see cref="SamplerOptionSet"/>),
/// and one run: plan (a bad setting is a usage error), generate with a progress line and Ctrl+C, write the grid and an
/// APNG.
/// </summary>
internal sealed class EditOptions(SamplerKind defaultSampler, string defaultOut)
{
    private readonly Option<string> _checkpoint = new("--checkpoint")
    {
        Description = "checkpoint written by 'ddpm train' or 'ddpm import', or raw PyTorch weights (.pth state_dict, " +
            ".safetensors) with --config",
        Required = true,
    };
    private readonly Option<string> _config =
        WeightOptions.ConfigOption("YAML config giving the architecture of raw weights (.pth, .safetensors)");
    private readonly Option<bool> _strict = WeightOptions.StrictOption();
    private readonly Option<bool> _allowNonFinite = WeightOptions.AllowNonFiniteOption();
    private readonly Option<bool> _noEma = new("--no-ema")
    {
        Description = "use the raw weights even when the checkpoint has an EMA",
    };
    private readonly Option<long> _seed = new("--seed")
    {
        Description = "seed of the noise (image i depends only on the seed, i and the inputs)",
        DefaultValueFactory = _ => 0,
    };
    private readonly Option<string> _out = new("--out")
    {
        Description = "output directory",
        DefaultValueFactory = _ => defaultOut,
    };
    private readonly Option<Spelled<DeviceChoice>> _device = CommonOptions.DeviceOption();
    private readonly Option<double> _guidance = new("--guidance")
    {
        Description = "classifier-free guidance weight w (ε = (1+w)·ε(y) − w·ε(∅))",
        DefaultValueFactory = _ => 0.0,
    };
    private readonly Option<int?> _batch = new("--batch-size")
    {
        Description = "images per forward pass (default 100; the same images at any batch size)",
    };
    private readonly SamplerOptionSet _sampler = new(defaultSampler);

    public void AddTo(Command command)
    {
        Option[] options = [_checkpoint, _config, _strict, _allowNonFinite, _noEma, _seed, _out, _device, _guidance,
            _batch];
        foreach (var option in options) command.Add(option);
        _sampler.AddTo(command);
    }

    public long Seed(ParseResult p) => p.GetValue(_seed);
    public double Guidance(ParseResult p) => p.GetValue(_guidance);
    public SamplerOptions Sampler(ParseResult p) => _sampler.Read(p);
    public int BatchSize(ParseResult p) => p.GetValue(_batch) ?? 100;

    /// <summary>Checks --out, then loads the weights on the chosen device.</summary>
    public ImageGenerator Load(ParseResult p)
    {
        var outDir = p.GetValue(_out)!;
        PathCheck.EnsureWritableFolder(outDir, "--out"); // before any work: a bad --out must not cost a whole run
        var path = p.GetValue(_checkpoint)!;
        var device = CommonOptions.ResolveDevice(p.GetValue(_device));
        var config = WeightOptions.ConfigFor(path, p.GetValue(_config));
        var generator = ImageGenerator.Load(path, device, useEma: !p.GetValue(_noEma), config: config,
            strict: p.GetValue(_strict), allowNonFinite: p.GetValue(_allowNonFinite));
        WeightOptions.WarnMissing(generator.Source!.MissingKeys);
        WeightOptions.WarnNonFinite(path, generator.Source.NonFiniteTensors);
        return generator;
    }

    /// <summary>An image option's file or folder at the model's size; any problem is a usage error naming it.</summary>
    public static Tensor Images(string option, string path, ImageGenerator generator, bool masks = false)
    {
        var (channels, size) = ((int)generator.ImageShape[0], (int)generator.ImageShape[1]);
        try { return masks ? EditImages.ReadMasks(path, size) : EditImages.ReadImages(path, channels, size); }
        catch (DataException e) { throw new UsageException($"{option} {e.Message}"); }
    }

    /// <summary>
    /// Plans <paramref name="request"/> (a bad setting or input is a usage error), generates it with a progress line
    /// (Ctrl+C stops between steps and writes nothing), then writes <paramref name="gridName"/> with
    /// <paramref name="perRow"/> images a row, and the animations asked for.
    /// </summary>
    /// <param name="animation">Frames of the first batch's x_t to keep as reverse.png (APNG), or null for none.</param>
    /// <param name="extraAnimation">An APNG made from the result, written as GRID-anim.png, or null.</param>
    /// <returns>The exit code.</returns>
    public int Run(ParseResult p, ImageGenerator generator, GenerationRequest request, string gridName, int perRow,
        int? animation, Func<GenerationResult, byte[]?>? extraAnimation = null)
    {
        var outDir = p.GetValue(_out)!;
        GenerationPlan plan;
        try { plan = generator.Plan(request); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        int steps = plan.Timesteps.Count;
        int every = animation is > 0 and var a ? Math.Max(1, steps / a) : 0;
        var frames = new List<byte[]>();
        var progress = new ProgressLine();
        using var cancel = new CancellationTokenSource();
        using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c =>
        {
            c.Cancel = !cancel.IsCancellationRequested;
            cancel.Cancel();
        });
        using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c =>
        {
            c.Cancel = true;
            cancel.Cancel();
        });
        GenerationResult result;
        try
        {
            result = generator.Generate(request, s =>
            {
                int done = s.Index + 1;
                if (s.Batch == 0 && every > 0 && (done % every == 0 || done == 1 || done == steps))
                    frames.Add(ImageGrid.ToPng(s.X, perRow));
                progress.Update(s.Done, s.Total, $"t={s.Timestep}");
            }, cancel.Token);
        }
        catch (OperationCanceledException)
        {
            progress.Finish();
            Console.Error.WriteLine($"error: {request.Kind} interrupted: nothing was written to '{outDir}'");
            return 130;
        }
        using var _ = result;
        progress.Finish();
        Directory.CreateDirectory(outDir);
        var grid = Path.Combine(outDir, gridName);
        ImageGrid.SavePng(result.Images, perRow, grid);
        if (frames.Count > 0)
            AtomicFile.WriteAllBytes(Path.Combine(outDir, "reverse.png"), AnimatedPng.Assemble(frames));
        if (extraAnimation?.Invoke(result) is { } apng)
        {
            var name = Path.GetFileNameWithoutExtension(gridName) + "-anim.png";
            AtomicFile.WriteAllBytes(Path.Combine(outDir, name), apng);
        }
        var t = result.Timings;
        var sampler = request.Sampler.Describe(generator.Diffusion.T);
        var batches = plan.Batches > 1 ? $" × {plan.Batches} batches" : "";
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{request.Kind}: {result.Count} images, {steps} model calls each with {sampler}{batches}, " +
            $"{t.TotalSeconds:F1} s ({t.TotalSeconds / result.Count:F2} s/image)"));
        Console.WriteLine(grid);
        return CliApp.Ok;
    }
}
