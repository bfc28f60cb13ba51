using System.Diagnostics;
using Ddpm.Onnx.Sampling;

namespace Ddpm.Onnx;

/// <summary>
/// Generates images from an exported U-Net on ONNX Runtime (the TorchSharp library's ImageGenerator, without libtorch):
/// the network's output (ε, x_0 or v) turned into ε, classifier-free guidance, x_T and step noise per image, batches
/// with a fresh sampler each, a per-step callback and cancellation. One generation at a time per instance.
/// </summary>
public sealed class OnnxImageGenerator : IDisposable
{
    private readonly bool _owned;
    // Float32 coefficients per timestep, as the TorchSharp library's GaussianDiffusion keeps them.
    private readonly float[] _sqrtAc, _sqrtOneMinusAc, _sqrtRecipAc, _sqrtRecipM1Ac;

    public OnnxDenoiser Model { get; }
    public DiffusionSchedule Schedule { get; }
    public OnnxModelInfo Info => Model.Info;

    /// <summary>Wraps an open model (not owned: the caller disposes it).</summary>
    public OnnxImageGenerator(OnnxDenoiser model) : this(model, owned: false)
    {
    }

    private OnnxImageGenerator(OnnxDenoiser model, bool owned)
    {
        Model = model;
        _owned = owned;
        Schedule = new DiffusionSchedule(model.Info.Betas);
        var ac = Schedule.AlphasCumprod;
        _sqrtAc = ac.Select(a => (float)Math.Sqrt(a)).ToArray();
        _sqrtOneMinusAc = ac.Select(a => (float)Math.Sqrt(1 - a)).ToArray();
        _sqrtRecipAc = ac.Select(a => (float)(1 / Math.Sqrt(a))).ToArray();
        _sqrtRecipM1Ac = ac.Select(a => (float)Math.Sqrt(1 / a - 1)).ToArray();
    }

    /// <summary>Opens an exported model; the generator owns it.</summary>
    public static OnnxImageGenerator Load(string path, OnnxSessionSettings? settings = null) => new(OnnxDenoiser.Load(path, settings), owned: true);

    /// <summary>Checks <paramref name="request"/> against the model; returns the timesteps each batch visits.</summary>
    /// <exception cref="ArgumentException">A setting out of range or not fitting the model (named).</exception>
    public IReadOnlyList<int> Plan(GenerationRequest request)
    {
        if (request.Count < 1) throw new ArgumentException($"count must be >= 1, got {request.Count}", nameof(request));
        if (request.FirstIndex < 0) throw new ArgumentException($"the first image index must be >= 0, got {request.FirstIndex}", nameof(request));
        if (request.MaxBatchSize < 1) throw new ArgumentException($"the batch size must be >= 1, got {request.MaxBatchSize}", nameof(request));
        if (!(request.Guidance >= 0) || !double.IsFinite(request.Guidance))
            throw new ArgumentException($"guidance must be a finite number >= 0, got {request.Guidance}", nameof(request));
        if (request.Labels is { } labels)
        {
            if (!Info.IsConditional)
                throw new ArgumentException("class labels need a class-conditional model; this one is unconditional", nameof(request));
            if (labels.Count != request.Count)
                throw new ArgumentException($"labels: {labels.Count} given for {request.Count} images (one per image)", nameof(request));
            foreach (var y in labels)
                if (y < 0 || y >= Info.NumClasses)
                    throw new ArgumentException($"class {y}: the model was trained on classes 0..{Info.NumClasses - 1}", nameof(request));
        }
        else if (request.Guidance != 0)
        {
            throw new ArgumentException("guidance needs class labels (a class per image)", nameof(request));
        }
        return request.Sampler.Create(Schedule).Timesteps;
    }

    /// <summary>Runs the request; <paramref name="onStep"/> sees every step of every batch; <paramref name="cancel"/>
    /// is checked before each step.</summary>
    /// <exception cref="ArgumentException">As <see cref="Plan"/>.</exception>
    /// <exception cref="OperationCanceledException">Cancelled.</exception>
    public GenerationResult Generate(GenerationRequest request, Action<GenerationStep>? onStep = null, CancellationToken cancel = default)
    {
        var timesteps = Plan(request);
        var clock = Stopwatch.StartNew();
        var noise = request.Noise ?? new SeededNoise(request.Seed);
        int size = Info.ImageSize;
        int batchSize = Math.Min(request.MaxBatchSize, request.Count), batches = (request.Count + batchSize - 1) / batchSize;
        bool guided = request.Labels is not null && request.Guidance != 0;
        var images = new float[(long)request.Count * size];
        for (int b = 0; b < batches; b++)
        {
            int start = b * batchSize, n = Math.Min(batchSize, request.Count - start), len = n * size;
            long first = request.FirstIndex + start;
            var sampler = request.Sampler.Create(Schedule);
            var x = new float[len];
            var next = new float[len];
            var eps = new float[len];
            var z = new float[len];
            noise.Initial(first, n, x);
            // The labels of the batch (and ∅ for the unconditional half when guided, or for all when no labels are
            // given).
            int rows = guided ? 2 * n : n;
            var labels = new long[Info.IsConditional ? rows : 0];
            for (int j = 0; j < labels.Length; j++)
                labels[j] = request.Labels is { } ys && j < n ? ys[start + j] : Info.NullLabel;
            var modelIn = guided ? new float[2 * len] : x;
            var modelOut = new float[rows * size];
            var t = new long[rows];
            var uncond = guided ? new float[len] : [];
            for (int i = 0; i < timesteps.Count; i++)
            {
                cancel.ThrowIfCancellationRequested();
                int step = timesteps[i];
                Array.Fill(t, step);
                if (guided)
                {
                    x.CopyTo(modelIn, 0);
                    x.CopyTo(modelIn, len);
                }
                Model.Forward(guided ? modelIn : x, t, labels, modelOut);
                ToEps(modelOut.AsSpan(0, len), x, step, eps);
                if (guided)
                {
                    // ε̃ = (1 + w)·ε(x, y) − w·ε(x, ∅) (Ho & Salimans 2022, eq. 6).
                    ToEps(modelOut.AsSpan(len, len), x, step, uncond);
                    float a = (float)(1 + request.Guidance), w = (float)request.Guidance;
                    for (int k = 0; k < len; k++) eps[k] = a * eps[k] - w * uncond[k];
                }
                bool noisy = sampler.UsesNoise(i);
                if (noisy) noise.Step(first, n, i, z);
                sampler.Step(eps, i, x, noisy ? z : ReadOnlySpan<float>.Empty, next);
                onStep?.Invoke(new GenerationStep(b, batches, first, n, i, timesteps.Count, step, x, eps, next,
                    _sqrtRecipAc[step], _sqrtRecipM1Ac[step], request.Sampler.ClipX0));
                (x, next) = (next, x);
            }
            for (int k = 0; k < len; k++) images[(long)start * size + k] = Math.Clamp(x[k], -1f, 1f);
        }
        return new GenerationResult(images, request.Count, Info.Channels, Info.Height, Info.Width, timesteps, clock.Elapsed.TotalSeconds);
    }

    /// <summary>The network's output as ε: ε itself; (x_t/√ᾱ_t − x_0)/√(1/ᾱ_t − 1) for x_0; √(1 − ᾱ_t) x_t + √ᾱ_t v for
    /// v.</summary>
    internal void ToEps(ReadOnlySpan<float> output, ReadOnlySpan<float> x, int t, Span<float> eps)
    {
        switch (Info.Prediction)
        {
            case PredictionType.Epsilon:
                output.CopyTo(eps);
                break;
            case PredictionType.X0:
                float r = _sqrtRecipAc[t], m = _sqrtRecipM1Ac[t];
                for (int i = 0; i < x.Length; i++) eps[i] = (r * x[i] - output[i]) / m;
                break;
            case PredictionType.V:
                float s1 = _sqrtOneMinusAc[t], s = _sqrtAc[t];
                for (int i = 0; i < x.Length; i++) eps[i] = s1 * x[i] + s * output[i];
                break;
        }
    }

    public void Dispose()
    {
        if (_owned) Model.Dispose();
    }
}
