using System.Diagnostics;
using System.Globalization;
using System.Text;
using Ddpm.Data;
using Ddpm.Imaging;
using Ddpm.Sampling;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>
/// Issue 26's table: how well a trained MNIST model completes half-masked test digits (plain replacement against
/// RePaint's resampling, with the masked and the unmasked digits as floor and ceiling) and cleans up degraded ones
/// (SDEdit at several strengths), measured by the project's classifier: agreement with the true label and the Fréchet
/// distance of its features against real digits. Unconditional: the model must infer the digit from what is kept.
/// </summary>
public static class EditingBenchmark
{
    /// <summary>Runs every row; <paramref name="log"/> hears each as it finishes.</summary>
    public static IReadOnlyList<EditingRow> Run(EditingBenchmarkOptions options, Action<string>? log = null,
        CancellationToken cancel = default)
    {
        if (options.Num <= MnistClassifier.FeatureDim)
            throw new ArgumentException($"num must exceed the classifier's {MnistClassifier.FeatureDim} feature " +
                $"dimensions (FD needs a full-rank covariance), got {options.Num}");
        var store = new ClassifierStore(options.DataDir);
        if (!store.IsTrained)
            throw new DataException(options.DataDir, "holds no trained classifier: run 'ddpm eval' with it once");
        var (classifier, _) = store.Load();
        using var _classifier = classifier;
        var (train, test) = store.LoadMnistAsync(new MnistSource { Log = log }, cancel).GetAwaiter().GetResult();
        using var _train = train;
        using var _test = test;
        return Run(options, classifier, train, test, log, cancel);
    }

    /// <summary>
    /// The same against a given classifier, real digits (<paramref name="train"/>: the FD reference) and labelled
    /// digits to edit (the first N of <paramref name="test"/>), none of them owned.
    /// </summary>
    public static IReadOnlyList<EditingRow> Run(EditingBenchmarkOptions options, MnistClassifier classifier,
        ImageDataset train, ImageDataset test, Action<string>? log = null, CancellationToken cancel = default)
    {
        if (options.Num <= MnistClassifier.FeatureDim || options.Num > test.Count)
            throw new ArgumentException($"num must exceed the classifier's {MnistClassifier.FeatureDim} feature " +
                $"dimensions (FD needs a full-rank covariance) and be at most the {test.Count} digits, got " +
                $"{options.Num}");
        using var generator = ImageGenerator.Load(options.Checkpoint, options.Device);
        if (!generator.ImageShape.SequenceEqual(new long[] { 1, MnistClassifier.ImageSize, MnistClassifier.ImageSize }))
            throw new DataException(options.Checkpoint, "makes other than 1-channel 28×28 images; the classifier and " +
                "the digits are MNIST");

        using var scope = NewDisposeScope();
        FeatureStatistics reference;
        using (var real = classifier.Embed(train.Images))
            reference = FeatureStatistics.FromFeatures(real.Features, train.Description);
        using var _reference = reference;
        var digits = test.Images.narrow(0, 0, options.Num).to(float32).div(127.5).sub(1.0);
        var labels = test.Labels!.narrow(0, 0, options.Num);
        var rows = new List<EditingRow>();
        void Add(string task, string method, Tensor images, (double Wall, double Cpu) seconds, int calls)
        {
            using var outputs = classifier.Embed(Pixels.Quantize(images));
            double agreement = outputs.Probabilities.argmax(1).eq(labels).to(float64).mean().item<double>();
            using var stats = FeatureStatistics.FromFeatures(outputs.Features, method);
            double fd = FrechetDistance.Compute(stats, reference);
            int n = options.Num;
            var row = new EditingRow(task, method, agreement, fd, seconds.Wall / n, seconds.Cpu / n, calls);
            rows.Add(row);
            log?.Invoke(Format(row));
        }
        (Tensor Images, (double, double) Seconds, int Calls) Edit(GenerationRequest request)
        {
            cancel.ThrowIfCancellationRequested();
            request = request with { Count = options.Num, Seed = options.Seed, MaxBatchSize = options.BatchSize };
            var calls = generator.Plan(request).Timesteps.Count;
            var process = Process.GetCurrentProcess();
            var cpu = process.TotalProcessorTime;
            var clock = Stopwatch.StartNew();
            var result = generator.Generate(request, cancel: cancel);
            process.Refresh();
            var wall = clock.Elapsed.TotalSeconds;
            return (result.Images, (wall, (process.TotalProcessorTime - cpu).TotalSeconds), calls);
        }
        string sampler = options.Sampler.Describe(generator.Diffusion.T);
        int steps = options.Sampler.Steps ?? SamplerOptions.DefaultSteps(options.Sampler.Kind, generator.Diffusion.T);

        Add("unedited", "original test digits (ceiling)", digits, (0, 0), 0);
        var masks = new[] { ("bottom half masked", Half(top: true)), ("right half masked", Half(top: false)) };
        foreach (var (task, keep) in masks)
        {
            var masked = where(keep.gt(0.5), digits, full_like(digits, -1.0));
            Add(task, "masked input, not completed (floor)", masked, (0, 0), 0);
            var fill = new Inpainting { Known = digits, Mask = keep };
            var request = new GenerationRequest { Sampler = options.Sampler, Inpainting = fill };
            var (naive, s1, c1) = Edit(request);
            Add(task, $"replacement, {sampler}, {steps} steps", naive, s1, c1);
            if (options.MatchedControl)
            {
                int calls = RePaintSchedule.ModelCalls(steps, options.JumpLength, options.Resamplings);
                int matched = Math.Min(generator.Diffusion.T, calls);
                var (more, s2, c2) = Edit(request with { Sampler = options.Sampler with { Steps = matched } });
                Add(task, $"replacement, {sampler}, {matched} steps", more, s2, c2);
            }
            var resampled = fill with { Resamplings = options.Resamplings, JumpLength = options.JumpLength };
            var (repaint, s3, c3) = Edit(request with { Inpainting = resampled });
            var name = $"RePaint r = {options.Resamplings}, j = {options.JumpLength}, {sampler}, {steps} steps";
            Add(task, name, repaint, s3, c3);
        }
        var degraded = new[]
        {
            ($"salt-and-pepper {Number(options.SaltAndPepper)}",
                SaltAndPepper(digits, options.SaltAndPepper, options.Seed)),
            ($"blur σ {Number(options.BlurSigma)}", Blur(digits, options.BlurSigma)),
        };
        foreach (var (task, inputs) in degraded)
        {
            Add(task, "degraded input, not edited", inputs, (0, 0), 0);
            foreach (var s in options.Strengths)
            {
                var edit = new ImageToImage { Images = inputs, Strength = s };
                var request = new GenerationRequest { Sampler = options.Sampler, ImageToImage = edit };
                var (images, seconds, calls) = Edit(request);
                Add(task, $"SDEdit s = {Number(s)}, {sampler}", images, seconds, calls);
            }
        }
        return rows;
    }

    /// <summary>The rows as a Markdown table.</summary>
    public static string ToMarkdown(IReadOnlyList<EditingRow> rows)
    {
        var text = new StringBuilder();
        text.AppendLine("| inputs | method | model calls | label agreement | FD | wall s/image | CPU s/image |");
        text.AppendLine("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
        foreach (var r in rows)
            text.AppendLine(string.Create(CultureInfo.InvariantCulture, $"| {r.Task} | {r.Method} | {r.ModelCalls} | " +
                $"{100 * r.LabelAgreement:F1} % | {r.FrechetDistance:F1} | {r.SecondsPerImage:F3} | " +
                $"{r.CpuSecondsPerImage:F3} |"));
        return text.ToString();
    }

    private static string Format(EditingRow r) => string.Create(CultureInfo.InvariantCulture,
        $"{r.Task}: {r.Method}: label agreement {100 * r.LabelAgreement:F1} %, FD {r.FrechetDistance:F1}, " +
        $"{r.SecondsPerImage:F3} s/image (CPU {r.CpuSecondsPerImage:F3} s)");

    private static string Number(double v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>Keep the top half (rows 0–13) or the left half (columns 0–13): [1, 1, 28, 28].</summary>
    private static Tensor Half(bool top)
    {
        var keep = zeros(1, 1, 28, 28);
        if (top) keep[.., .., ..14, ..] = 1;
        else keep[.., .., .., ..14] = 1;
        return keep;
    }

    /// <summary>Each pixel with probability p set to −1 or 1 (half each), from a generator seeded with seed.</summary>
    public static Tensor SaltAndPepper(Tensor images, double p, long seed)
    {
        using var scope = NewDisposeScope();
        using var g = new TorchSharp.torch.Generator((ulong)seed, new Device("cpu"));
        var u = rand(images.shape, generator: g);
        var salt = rand(images.shape, generator: g).lt(0.5);
        var noise = where(salt, ones_like(images), full_like(images, -1.0));
        return where(u.lt(p), noise, images).MoveToOuterDisposeScope();
    }

    /// <summary>Gaussian blur with σ (7 × 7 kernel, normalised) of images [N, 1, H, W] in [−1, 1].</summary>
    public static Tensor Blur(Tensor images, double sigma)
    {
        using var scope = NewDisposeScope();
        var d = arange(-3, 4, dtype: float64);
        var g1 = (-(d * d) / (2 * sigma * sigma)).exp();
        var kernel = g1.outer(g1);
        kernel = (kernel / kernel.sum()).to(float32).reshape(1, 1, 7, 7);
        // Blur the intensity above black (x + 1), so the zero padding is black, then map back to [−1, 1].
        var blurred = nn.functional.conv2d(images + 1, kernel, padding: [3, 3]) - 1;
        return blurred.clamp(-1, 1).MoveToOuterDisposeScope();
    }
}
