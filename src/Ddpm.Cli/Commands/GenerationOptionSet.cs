using System.CommandLine;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Ddpm.Configuration;
using Ddpm.Distributed;
using Ddpm.Imaging;
using Ddpm.IO;
using Ddpm.Runs;
using Ddpm.Sampling;

namespace Ddpm.Cli.Commands;

/// <summary>
/// The options of every command that generates images from a checkpoint into an output folder (<c>sample</c>,
/// <c>inpaint</c>, <c>interpolate</c>), declared once: the weights, how many images and of which class, the sampler,
/// the output; and the one way such a command runs (<see cref="Run"/>: progress, Ctrl+C, what the folder holds).
/// </summary>
internal sealed class GenerationOptionSet(SamplerKind defaultSampler = SamplerOptions.RecommendedKind, string defaultOut = "samples")
{
    private readonly Option<string> _checkpoint = new("--checkpoint")
    {
        Description = "checkpoint written by 'ddpm train' or 'ddpm import', or raw PyTorch weights (.pth state_dict, .safetensors) with --config",
        Required = true,
    };
    private readonly Option<string> _config = WeightOptions.ConfigOption("YAML config giving the architecture of raw weights (required for .pth/.safetensors)");
    private readonly Option<bool> _strict = WeightOptions.StrictOption();
    private readonly Option<int?> _num = new("--num") { Description = "number of images (default: train_params.num_samples)" };
    private readonly Option<int?> _rows = new("--grid-rows") { Description = "images per grid row, as make_grid's nrow (default: train_params.num_grid_rows)" };
    private readonly Option<long> _seed = new("--seed") { Description = "sampling seed (image i's noise depends only on the seed and i: the same images at any --batch-size)", DefaultValueFactory = _ => 0 };
    private readonly Option<string> _out = new("--out") { Description = "output directory", DefaultValueFactory = _ => defaultOut };
    private readonly Option<int> _saveEvery = new("--save-every") { Description = "also write the grid every K steps (0 = only the final grid)", DefaultValueFactory = _ => 0 };
    private readonly Option<int> _frames = new("--frames") { Description = "frames of the animated reverse process (reverse.png, APNG; 0 = none)", DefaultValueFactory = _ => 50 };
    private readonly Option<Spelled<DeviceChoice>> _device = CommonOptions.DeviceOption();
    private readonly Option<int?> _label = new("--class") { Description = "class label for a class-conditional model (without it, --guidance W gives image i class i mod num_classes)" };
    private readonly Option<double> _guidance = new("--guidance") { Description = "classifier-free guidance weight w (ε = (1+w)·ε(y) − w·ε(∅))", DefaultValueFactory = _ => 0.0 };
    private readonly Option<bool> _noEma = new("--no-ema") { Description = "use the raw weights even when the checkpoint has an EMA" };
    private readonly Option<bool> _allowNonFinite = WeightOptions.AllowNonFiniteOption();
    private readonly Option<Spelled<Precision>> _precision = CommonOptions.EnumOption("--precision", "fp32, or bf16 (the network in bfloat16, the sampler's arithmetic in float32)", Precision.Fp32, "precision");
    private readonly Option<int?> _batch = new("--batch-size") { Description = "images per forward pass (default: as many as fit in 4 GiB or half the available memory); the same seed gives the same images at any batch size, the intermediate grids and the animation show the first batch" };
    private readonly SamplerOptionSet _sampler = new(defaultSampler);

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (Option o in new Option[] { _checkpoint, _config, _strict, _num, _rows, _seed, _out, _saveEvery, _frames, _device, _label, _guidance,
                     _noEma, _precision, _batch, _allowNonFinite })
            command.Add(o);
        _sampler.AddTo(command);
    }

    /// <summary>Loads the checkpoint's generator (EMA weights unless --no-ema), warning about missing keys and non-finite weights.</summary>
    public ImageGenerator Load(ParseResult p)
    {
        string path = p.GetValue(_checkpoint)!;
        PathCheck.EnsureWritableFolder(p.GetValue(_out)!, "--out"); // before any work: a bad --out must not cost a whole sampling run
        var generator = ImageGenerator.Load(path, CommonOptions.ResolveDevice(p.GetValue(_device)), p.GetValue(_precision), !p.GetValue(_noEma),
            WeightOptions.ConfigFor(path, p.GetValue(_config)), p.GetValue(_strict), p.GetValue(_allowNonFinite));
        WeightOptions.WarnMissing(generator.Source!.MissingKeys);
        WeightOptions.WarnNonFinite(path, generator.Source.NonFiniteTensors);
        return generator;
    }

    /// <summary>
    /// The request the options ask of <paramref name="generator"/>: --num images (the config's num_samples by default) of
    /// --class, or with --guidance alone (and <paramref name="cycleClasses"/>) image i of class i mod num_classes (one
    /// digit per grid column).
    /// </summary>
    public GenerationRequest Request(ParseResult p, ImageGenerator generator, int? defaultCount = null, bool cycleClasses = true)
    {
        var config = generator.Source!.Config;
        int n = p.GetValue(_num) ?? defaultCount ?? config.Train.NumSamples;
        double guidance = p.GetValue(_guidance);
        if (guidance > 0 && generator.Model.IsConditional && config.Train.LabelDropout <= 0 && (MpiCommunicator.Current?.Rank ?? 0) == 0)
            Console.Error.WriteLine("warning: the model was trained without label dropout (train_params.label_dropout = 0), so its unconditional ε is untrained and guidance may not help");
        return new GenerationRequest
        {
            Count = n, Seed = p.GetValue(_seed), Sampler = _sampler.Read(p), Guidance = guidance, MaxBatchSize = p.GetValue(_batch),
            Labels = p.GetValue(_label) is { } y ? Enumerable.Repeat(y, n).ToArray()
                : guidance != 0 && cycleClasses ? GenerationRequest.CyclingClasses(n, config.Model.NumClasses) : null,
        };
    }

    /// <summary>The run of <paramref name="request"/> into --out (a request the model cannot take is a usage error).</summary>
    public SampleRun Plan(ParseResult p, ImageGenerator generator, GenerationRequest request, int? defaultRows = null)
    {
        try
        {
            return new SampleRun(generator, request, p.GetValue(_out)!, p.GetValue(_rows) ?? defaultRows ?? generator.Source!.Config.Train.NumGridRows,
                p.GetValue(_frames), p.GetValue(_saveEvery), MpiCommunicator.Current);
        }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
    }

    /// <summary>An image option's file or folder at the model's size (<see cref="EditImages"/>); a problem is a usage error naming it.</summary>
    public static TorchSharp.torch.Tensor Images(string option, string path, ImageGenerator generator, bool masks = false)
    {
        var (channels, size) = ((int)generator.ImageShape[0], (int)generator.ImageShape[1]);
        try { return masks ? EditImages.ReadMasks(path, size) : EditImages.ReadImages(path, channels, size); }
        catch (Data.DataException e) { throw new UsageException($"{option} {e.Message}"); }
    }

    /// <summary>
    /// Runs <paramref name="run"/> with a progress bar; Ctrl+C or SIGTERM stops between steps with a message saying what the
    /// folder holds (exit 130 / 143; a second Ctrl+C ends the process at once). Rank 0 reports (<paramref name="what"/>, e.g.
    /// "sampled", and where the weights came from) and prints the grid's path.
    /// </summary>
    public int Run(ParseResult p, SampleRun run, string what)
    {
        using var claim = run; // the folder is given up however this ends
        if (run.IsRoot && run.Prepare() is { Count: > 0 } earlier)
            Console.Error.WriteLine($"note: removed {earlier.Count} file(s) of an earlier sample from '{run.Folder.Path}': " +
                string.Join(", ", earlier.Take(5)) + (earlier.Count > 5 ? ", …" : ""));
        var progress = new ProgressLine();
        var clock = Stopwatch.StartNew();
        using var cancel = new CancellationTokenSource();
        int exitCode = 130; // as train: 128 + the signal's number
        using var onInt = PosixSignalRegistration.Create(PosixSignal.SIGINT, c => { c.Cancel = !cancel.IsCancellationRequested; cancel.Cancel(); });
        using var onTerm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, c => { c.Cancel = true; exitCode = 143; cancel.Cancel(); });
        long lastStep = 0;
        SampleRunResult result;
        try
        {
            result = run.Run(s =>
            {
                lastStep = s.Done;
                progress.Update(s.Done, s.Total, string.Create(CultureInfo.InvariantCulture,
                    $"t={s.Timestep} {clock.Elapsed.TotalMilliseconds / s.Done:F0} ms/step"));
            }, cancel.Token);
        }
        catch (OperationCanceledException)
        {
            if (!run.IsRoot) return exitCode;
            progress.Finish();
            Console.Error.WriteLine($"error: {run.Interrupted(lastStep)}");
            return exitCode;
        }
        if (!run.IsRoot) return CliApp.Ok;
        progress.Finish();
        Console.Error.WriteLine(run.Summary(result, clock.Elapsed, what, p.GetValue(_checkpoint)!));
        Console.WriteLine(result.GridPath);
        return CliApp.Ok;
    }
}
