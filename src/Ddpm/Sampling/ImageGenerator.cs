using System.Diagnostics;
using System.Globalization;
using Ddpm.Configuration;
using Ddpm.Diffusion;
using Ddpm.Interop;
using Ddpm.Models;
using Ddpm.Runtime;
using Ddpm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// Generates images from a trained U-Net (diffusers' pipeline seam): the network's output (ε, x_0 or v) turned into ε,
/// classifier-free guidance, x_T and step noise per image (<see cref="ImageNoise"/>), large requests in batches with a
/// fresh sampler each, a per-step callback and cancellation. Every generation path (CLI sample, eval, bench, the
/// examples) goes through <see cref="Generate"/>. One generation at a time per instance; <see cref="Dispose"/> from
/// another thread waits for it to end, and calls after it throw <see cref="ObjectDisposedException"/>.
/// </summary>
public sealed class ImageGenerator : IDisposable
{
    private readonly LoadedModel? _owned;
    private readonly GraphedForward _forward;
    private readonly UseGuard _uses = new();

    /// <summary>
    /// Wraps a model in memory (not owned: the caller disposes it). The model is moved to <paramref name="device"/>
    /// (default CPU), put in eval mode and, for <see cref="Precision.Bf16"/>, cast to bfloat16 (it still takes and
    /// returns float32; the samplers' arithmetic stays float32). <paramref name="diffusion"/> carries the schedule and
    /// what the network predicts.
    /// </summary>
    public ImageGenerator(UNet model, GaussianDiffusion diffusion, Device? device = null, Precision precision = Precision.Fp32)
    {
        TorchSharpPatch.EnsureApplied();
        Device = device ?? CPU;
        Model = model;
        Diffusion = diffusion;
        Precision = precision;
        model.to(Device).eval();
        if (precision == Precision.Bf16) model.to(ScalarType.BFloat16);
        _forward = GraphedForward.Create(model);
        EpsPredictor = diffusion.AsEpsPredictor((x, t) =>
        {
            using var use = _uses.Enter(this);
            return _forward.Forward(x, t);
        });
    }

    /// <summary>The same with the diffusion process of <paramref name="config"/>'s <c>diffusion_params</c>.</summary>
    public ImageGenerator(UNet model, DdpmConfig config, Device? device = null, Precision precision = Precision.Fp32)
        : this(model, GaussianDiffusion.FromOptions(config.Diffusion), device, precision)
    {
    }

    private ImageGenerator(LoadedModel loaded, bool usesEma, Device? device, Precision precision)
        : this(loaded.Model, loaded.Config, device, precision)
    {
        _owned = loaded;
        UsesEma = usesEma;
        Distilled = loaded.Manifest?.Distilled;
    }

    /// <summary>
    /// Loads a weight file (a ddpm checkpoint, or a PyTorch <c>.pth</c> / safetensors state_dict with
    /// <paramref name="config"/> giving its architecture; see <see cref="ModelFile.Load"/>). A checkpoint's EMA weights
    /// are used when it has them, unless <paramref name="useEma"/> is false. The generator owns the model. Weights
    /// holding NaN or infinite values are refused unless <paramref name="allowNonFinite"/> (then listed in
    /// <see cref="LoadedModel.NonFiniteTensors"/>).
    /// </summary>
    public static ImageGenerator Load(string path, Device? device = null, Precision precision = Precision.Fp32, bool useEma = true,
        DdpmConfig? config = null, bool strict = true, bool allowNonFinite = false)
    {
        TorchSharpPatch.EnsureApplied();
        // One open of the file for everything; the weights that will sample (the EMA's when used) are the ones checked.
        var loaded = ModelFile.Load(path, config, strict, allowNonFinite, useEma);
        try
        {
            return new ImageGenerator(loaded, loaded.UsesEma, device, precision);
        }
        catch
        {
            loaded.Dispose();
            throw;
        }
    }

    public UNet Model { get; }
    public GaussianDiffusion Diffusion { get; }
    public Device Device { get; }
    public Precision Precision { get; }
    /// <summary>What <see cref="Load"/> read (config, manifest, format, missing keys); null when built from a model in
    /// memory.</summary>
    public LoadedModel? Source => _owned;
    /// <summary>Whether <see cref="Load"/> put a checkpoint's EMA weights into the model.</summary>
    public bool UsesEma { get; }
    /// <summary>
    /// The grid and guidance a distilled student was trained for (its checkpoint's; set it for a student in memory), or
    /// null. Such a model samples only that way: see <see cref="Resolve"/>.
    /// </summary>
    public Distillation.DistilledGrid? Distilled { get; init; }
    /// <summary>[C, H, W] of one image.</summary>
    public long[] ImageShape => [Model.Options.ImChannels, Model.Options.ImSize, Model.Options.ImSize];
    /// <summary>ε_θ(x_t, t) of the unconditional model whatever it predicts
    /// (<see cref="GaussianDiffusion.AsEpsPredictor"/>), e.g. for the variational bound.</summary>
    public NoisePredictor EpsPredictor { get; }
    /// <summary>How the network runs: "CUDA graphs" (one capture per batch shape, <see cref="GraphedForward"/>) or
    /// "eager (why)".</summary>
    public string ForwardDescription => _forward.Description;

    /// <summary>
    /// Checks <paramref name="request"/> against this model and says what it will do, before any work: its settings,
    /// and an edit's inputs (shapes, value ranges, masks, strength, resampling, frames).
    /// </summary>
    /// <exception cref="ArgumentException">A setting that is out of range or does not fit the model (the message names
    /// it).</exception>
    /// <exception cref="InsufficientMemoryException">The images (kept until returned, and a grid of them) and one batch
    /// exceed the memory available on the CPU.</exception>
    public GenerationPlan Plan(GenerationRequest request)
    {
        using var use = _uses.Enter(this);
        request = Resolve(request);
        request.Validate(Model.Options);
        var timesteps = EditChecks.Timesteps(request, Diffusion.Schedule, ImageShape, Model.IsConditional, CheckClass);
        // Images per forward pass per image: the two classes an interpolation mixes, and the unconditional half of
        // guidance.
        int forwards = (request.Interpolation is { FromClass: { } a, ToClass: { } b } && a != b ? 2 : 1)
            + (IsGuided(request) ? 1 : 0);
        long? available = Device.type == DeviceType.CPU ? MemoryEstimate.AvailableCpuBytes() : null;
        int batch = Math.Min(request.MaxBatchSize ?? BatchSizeWithin(request.Count, DefaultMemoryBudget(available), forwards), request.Count);
        int batches = (request.Count + batch - 1) / batch;
        var plan = new GenerationPlan(timesteps, batches, batch, EstimateMemory(request.Count, batch, forwards));
        EnsureFits(plan, request, available);
        return plan;
    }

    /// <summary>
    /// The request as this model runs it. A distilled student (<see cref="Distilled"/>) samples DDIM (η = 0) on its
    /// own grid, x̂_0 clipped as during distillation, whatever sampler family the request names (a caller's default);
    /// another number of steps, a spacing, η or another solver is refused, naming the grid. With classes its guidance
    /// is built in: the request must ask for that weight (or for no class, its unconditional model). Other models: the
    /// request as it is (<see cref="Distillation.DistilledGrid.SamplerFor"/>).
    /// </summary>
    /// <exception cref="ArgumentException">A request the distilled student was not trained for.</exception>
    public GenerationRequest Resolve(GenerationRequest request)
    {
        if (Distilled is not { } d) return request;
        bool classes = request.Labels is not null || request.Interpolation is { FromClass: not null };
        return request with { Sampler = d.SamplerFor(request.Sampler, classes, request.Guidance) };
    }

    /// <summary>
    /// Whether each step also runs the network on the unconditional half (guidance): not for a distilled student, whose
    /// conditional output is already the guided teacher's.
    /// </summary>
    private bool IsGuided(GenerationRequest request) => request.Guidance != 0 && Distilled is null;

    /// <summary>The working set a batch may take when a request does not say: 4 GiB, or half the available CPU memory
    /// if less.</summary>
    public static long DefaultMemoryBudget(long? availableCpuBytes) => Math.Min((availableCpuBytes ?? 8L << 30) / 2, 4L << 30);

    /// <summary>
    /// Refuses, before anything is allocated, a request whose images (kept until returned, plus a grid of them as a
    /// caller writes it) and one batch's working set exceed the available memory.
    /// </summary>
    private static void EnsureFits(GenerationPlan plan, GenerationRequest request, long? available)
    {
        if (available is not { } free) return;
        long images = plan.Memory.OutputBytes * 2, need = images + plan.Memory.DeviceBytes;
        if (need <= free) return;
        static string Gib(long bytes) => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):F2} GiB");
        throw new InsufficientMemoryException(
            $"{request.Count} images{(request.MaxBatchSize is { } b ? $" in batches of {b}" : "")}: sampling needs an estimated {Gib(need)} " +
            $"({Gib(images)} for the images and their grid, {Gib(plan.Memory.DeviceBytes)} for a batch of {plan.BatchSize}) " +
            $"but {Gib(free)} of memory is available; ask for fewer images{(request.MaxBatchSize is not null ? " or a smaller batch" : "")}");
    }

    private void CheckClass(int y)
    {
        int classes = Model.Options.NumClasses;
        if (y < 0 || y >= classes)
            throw new ArgumentException($"class {y}: the model was trained on classes 0..{classes - 1}", "request");
    }

    /// <summary>
    /// The largest batch (1 … <paramref name="count"/>) whose working set on the device (weights, activations and
    /// noise: <see cref="GenerationMemory.DeviceBytes"/>) stays within <paramref name="budgetBytes"/>; 1 when even that
    /// does not.
    /// </summary>
    /// <param name="forwards">Images per forward pass per image (2 guided, 3 mixing two classes guided).</param>
    public int BatchSizeWithin(int count, long budgetBytes, int forwards = 1)
    {
        var one = EstimateMemory(1, 1, forwards);
        long perImage = Math.Max(1, one.DeviceBytes - one.WeightBytes);
        long fits = (budgetBytes - one.WeightBytes) / perImage;
        return (int)Math.Clamp(fits, 1, Math.Max(1, count));
    }

    /// <param name="forwards">Images per forward pass per image (2 guided, 3 mixing two classes guided).</param>
    private GenerationMemory EstimateMemory(int count, int batch, int forwards)
    {
        long pixels = ImageShape.Aggregate(1L, (a, b) => a * b);
        long weights = Model.ParameterCount() * (Precision == Precision.Bf16 ? 2 : 4);
        // Training's estimate counts the forward activations twice (kept for backward, and backward's working set).
        long perImage = MemoryEstimate.For(new DdpmConfig { Model = Model.Options }).ActivationBytesPerImage / 2;
        long activations = perImage * batch * forwards;
        long noise = batch * pixels * 4L * (1 + ImageNoise.StepsPerDraw) * (Device.type == DeviceType.CPU ? 1 : 2);
        return new GenerationMemory(weights, activations, noise, count * pixels * 4L);
    }

    /// <summary>
    /// Runs the request: for each batch a fresh sampler (<see cref="SamplerOptions.Create(NoiseSchedule)"/>; multistep
    /// solvers keep their history in it), x_T and step noise from the batch's images' streams, the model's output as ε
    /// (guided when the request has labels and a weight), and <see cref="SamplingLoop"/>. An edit changes the start and
    /// the sampler: inpainting wraps it in RePaint's replacement and resampling, image-to-image starts partway down its
    /// grid from the noised input, interpolation draws every noise as a slerp of two images' noises.
    /// <paramref name="onStep"/> sees every step of every batch in order; <paramref name="cancel"/> is checked before
    /// every step (OperationCanceledException within one step).
    /// </summary>
    /// <exception cref="ArgumentException">As <see cref="Plan"/>.</exception>
    public GenerationResult Generate(GenerationRequest request, Action<GenerationStep>? onStep = null, CancellationToken cancel = default)
    {
        TorchSharpPatch.EnsureApplied();
        using var use = _uses.Enter(this);
        request = Resolve(request);
        var plan = Plan(request);
        var clock = Stopwatch.StartNew();
        var stepSeconds = new List<double>((int)Math.Min(plan.TotalSteps, 1 << 20));
        var parts = new List<Tensor>();
        try
        {
            for (int b = 0; b < plan.Batches; b++)
            {
                using var scope = NewDisposeScope();
                int start = b * plan.BatchSize, n = Math.Min(plan.BatchSize, request.Count - start);
                long first = request.FirstIndex + start;
                var predictor = PredictorFor(request, start, n);
                using var setup = BatchSetup.Create(request, Diffusion, ImageShape, Device, start, n, predictor);
                var since = clock.Elapsed;
                int batch = b;
                var x = SamplingLoop.Run(setup.Sampler, setup.Predictor, setup.Start, setup.Noise, s =>
                {
                    stepSeconds.Add((clock.Elapsed - since).TotalSeconds);
                    onStep?.Invoke(new GenerationStep(Diffusion, s, request.Sampler.ClipX0, new GenerationBatch(batch, plan.Batches, first, n), plan.Timesteps.Count));
                    since = clock.Elapsed;
                }, cancel);
                parts.Add(x.clamp(-1.0, 1.0).cpu().MoveToOuterDisposeScope());
            }
            var images = parts.Count == 1 ? parts[0] : cat(parts, 0);
            if (parts.Count > 1) foreach (var p in parts) p.Dispose();
            parts.Clear();
            return new GenerationResult(images, request.FirstIndex, plan.Timesteps, new GenerationTimings(clock.Elapsed.TotalSeconds, stepSeconds));
        }
        finally
        {
            foreach (var p in parts) p.Dispose();
        }
    }

    /// <summary>
    /// ε_θ for images [start, start + n) of the request: unconditional, conditional on their labels with guidance, or
    /// for an interpolation between two classes the two classes' ε mixed by each frame's fraction.
    /// </summary>
    private NoisePredictor PredictorFor(GenerationRequest request, int start, int n)
    {
        double w = IsGuided(request) ? request.Guidance : 0; // a student's conditional output is already guided
        if (request.Interpolation is { FromClass: { } a, ToClass: { } b } path)
        {
            var from = full(n, (long)a, dtype: int64, device: Device);
            if (a == b)
                return ClassifierFreeGuidance.Guided(_forward.Forward, Model.NullLabel, from, w,
                    Diffusion.EpsFromOutput);
            var to = full(n, (long)b, dtype: int64, device: Device);
            var fractions = Enumerable.Range(0, n).Select(j => path.Fraction(request.FirstIndex + start + j)).ToArray();
            return ClassifierFreeGuidance.Mixed(_forward.Forward, Model.NullLabel, from, to, fractions, w,
                Diffusion.EpsFromOutput);
        }
        if (request.Labels is null) return EpsPredictor;
        var labels = tensor(request.Labels.Skip(start).Take(n).Select(y => (long)y).ToArray(), dtype: int64).to(Device);
        return ClassifierFreeGuidance.Guided(_forward.Forward, Model.NullLabel, labels, w, Diffusion.EpsFromOutput);
    }

    /// <summary>
    /// Disposes the CUDA graphs, and the model when <see cref="Load"/> created it, once the generation running on
    /// another thread (if any) has ended.
    /// </summary>
    public void Dispose()
    {
        if (!_uses.Close()) return;
        _forward.Dispose();
        _owned?.Dispose();
    }
}
