using System.Diagnostics;
using Ddpm.Distributed;
using Ddpm.Imaging;
using Ddpm.IO;
using Ddpm.Runs;

namespace Ddpm.Cli.Commands;

/// <summary>
/// The options of every command that generates images from a checkpoint into a folder (<c>sample</c>, <c>inpaint</c>,
/// <c>interpolate</c>), declared once, and the one way such a command runs (<see cref="Run"/>).
/// </summary>
internal sealed class GenerationOptionSet(SamplerKind defaultSampler = SamplerOptions.RecommendedKind, string defaultOut = "samples")
{
    private readonly Option<string> _checkpoint = Opt<string>("--checkpoint", "checkpoint written by 'ddpm train' or 'ddpm import', " +
        "or raw PyTorch weights (.pth state_dict, .safetensors) with --config", required: true);
    private readonly Option<string> _config = Opt<string>("--config", "YAML config giving the architecture of raw weights (required for .pth/.safetensors)");
    private readonly Option<bool> _strict = StrictOption();
    private readonly Option<int?> _num = Opt<int?>("--num", "number of images (default: train_params.num_samples)");
    private readonly Option<int?> _rows = Opt<int?>("--grid-rows", "images per grid row, as make_grid's nrow (default: train_params.num_grid_rows)");
    private readonly Option<long> _seed = Opt("--seed", "sampling seed (image i's noise depends only on the seed and i: the same images at any --batch-size)", 0L);
    private readonly Option<string> _out = Opt("--out", "output directory", defaultOut);
    private readonly Option<int> _saveEvery = Opt("--save-every", "also write the grid every K steps (0 = only the final grid)", 0);
    private readonly Option<int> _frames = Opt("--frames", "frames of the animated reverse process (reverse.png, APNG; 0 = none)", 50);
    private readonly Option<Spelled<DeviceChoice>> _device = DeviceOption();
    private readonly Option<int?> _label = Opt<int?>("--class", "class label for a class-conditional model (without it, --guidance W gives image i class i mod num_classes)");
    private readonly Option<double> _guidance = Opt("--guidance", "classifier-free guidance weight w (ε = (1+w)·ε(y) − w·ε(∅))", 0.0);
    private readonly Option<bool> _noEma = Opt<bool>("--no-ema", "use the raw weights even when the checkpoint has an EMA");
    private readonly Option<bool> _allowNonFinite = AllowNonFiniteOption();
    private readonly Option<Spelled<Precision>> _precision = EnumOption("--precision", "fp32, or bf16 (the network in bfloat16, the " +
        "sampler's arithmetic in float32)", Precision.Fp32, "precision");
    private readonly Option<int?> _batch = Opt<int?>("--batch-size", "images per forward pass (default: as many as fit in 4 GiB or half the " +
        "available memory); the same seed gives the same images at any batch size, the intermediate grids and the animation show the first batch");
    private readonly SamplerOptionSet _sampler = new(defaultSampler);

    public IEnumerable<Option> All =>
        [_checkpoint, _config, _strict, _num, _rows, _seed, _out, _saveEvery, _frames, _device, _label, _guidance, _noEma, _precision, _batch, _allowNonFinite, .. _sampler.All];

    /// <summary>The checkpoint's generator (EMA weights unless --no-ema), with warnings about its weights.</summary>
    public ImageGenerator Load(ParseResult p)
    {
        string path = p.GetValue(_checkpoint)!;
        PathCheck.EnsureWritableFolder(p.GetValue(_out)!, "--out"); // before any work: a bad --out must not cost a whole sampling run
        var generator = ImageGenerator.Load(path, ResolveDevice(p.GetValue(_device)), p.GetValue(_precision), !p.GetValue(_noEma),
            ConfigFor(path, p.GetValue(_config)), p.GetValue(_strict), p.GetValue(_allowNonFinite));
        WarnAboutWeights(path, generator.Source!.MissingKeys, generator.Source.NonFiniteTensors);
        return generator;
    }

    /// <summary>
    /// The request the options ask of <paramref name="generator"/>: --num images of --class, or with --guidance alone
    /// (and <paramref name="cycleClasses"/>) image i of class i mod num_classes (one digit per grid column).
    /// </summary>
    public GenerationRequest Request(ParseResult p, ImageGenerator generator, int? defaultCount = null, bool cycleClasses = true)
    {
        var config = generator.Source!.Config;
        int n = p.GetValue(_num) ?? defaultCount ?? config.Train.NumSamples;
        double guidance = p.GetValue(_guidance);
        if (guidance > 0 && generator.Model.IsConditional && config.Train.LabelDropout <= 0 && (MpiCommunicator.Current?.Rank ?? 0) == 0)
            Console.Error.WriteLine("warning: the model was trained without label dropout (train_params.label_dropout = 0), so its " +
                "unconditional ε is untrained and guidance may not help");
        return new GenerationRequest
        {
            Count = n, Seed = p.GetValue(_seed), Sampler = _sampler.Read(p), Guidance = guidance, MaxBatchSize = p.GetValue(_batch),
            Labels = p.GetValue(_label) is { } y ? Enumerable.Repeat(y, n).ToArray()
                : guidance != 0 && cycleClasses ? GenerationRequest.CyclingClasses(n, config.Model.NumClasses) : null,
        };
    }

    /// <summary>An image option's file or folder at the model's size; a problem is a usage error naming it.</summary>
    public static TorchSharp.torch.Tensor Images(string option, string path, ImageGenerator generator, bool masks = false)
    {
        var (channels, size) = ((int)generator.ImageShape[0], (int)generator.ImageShape[1]);
        try { return masks ? EditImages.ReadMasks(path, size) : EditImages.ReadImages(path, channels, size); }
        catch (Data.DataException e) { throw new UsageException($"{option} {e.Message}"); }
    }

    /// <summary>
    /// Generates <paramref name="request"/> into --out with a progress bar; Ctrl+C or SIGTERM stops between steps and
    /// says what the folder holds (exit 130 / 143; a second Ctrl+C ends at once). Rank 0 reports and prints the grid.
    /// </summary>
    public int Run(ParseResult p, ImageGenerator generator, GenerationRequest request, string what, int? defaultRows = null)
    {
        int rows = p.GetValue(_rows) ?? defaultRows ?? generator.Source!.Config.Train.NumGridRows;
        SampleRun run;
        try { run = new SampleRun(generator, request, p.GetValue(_out)!, rows, p.GetValue(_frames), p.GetValue(_saveEvery), MpiCommunicator.Current); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        using var claim = run; // the folder is given up however this ends
        if (run.Prepare() is { } note) Console.Error.WriteLine($"note: {note}");
        var (progress, clock) = (new ProgressLine(), Stopwatch.StartNew());
        using var stop = new StopSignals(secondIntKills: true);
        SampleRunResult result;
        try
        {
            result = run.Run(s => progress.Update(s.Done, s.Total,
                string.Create(CultureInfo.InvariantCulture, $"t={s.Timestep} {clock.Elapsed.TotalMilliseconds / s.Done:F0} ms/step")), stop.Token);
        }
        catch (OperationCanceledException)
        {
            progress.Finish();
            if (run.IsRoot) Console.Error.WriteLine($"error: {run.Interrupted()}");
            return stop.ExitCode(StopSignals.Sigint);
        }
        progress.Finish();
        if (!run.IsRoot) return CliApp.Ok;
        Console.Error.WriteLine(run.Summary(result, clock.Elapsed, what, p.GetValue(_checkpoint)!));
        Console.WriteLine(result.GridPath);
        return CliApp.Ok;
    }
}
