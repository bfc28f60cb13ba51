using Ddpm.Configuration;

namespace Ddpm.Sampling;

/// <summary>
/// What <see cref="ImageGenerator.Generate"/> makes: images <see cref="FirstIndex"/> … <see cref="FirstIndex"/> +
/// <see cref="Count"/> − 1 of <see cref="Seed"/>'s sequence, sampled from noise or, when one of
/// <see cref="Inpainting"/>, <see cref="ImageToImage"/> or <see cref="Interpolation"/> is set, edited from inputs.
/// Image i depends only on (seed, i, sampler, labels, inputs), so a request split into index ranges (e.g. one per
/// process) gives exactly the images of the whole request.
/// </summary>
public sealed record GenerationRequest
{
    /// <summary>Number of images N.</summary>
    public int Count { get; init; } = 1;
    /// <summary>Index of the first image in the seed's sequence (0 for a whole request; a shard's start
    /// otherwise).</summary>
    public long FirstIndex { get; init; }
    /// <summary>Seed of the per-image noise streams (<see cref="ImageNoise"/>).</summary>
    public long Seed { get; init; }
    public SamplerOptions Sampler { get; init; } = new();
    /// <summary>A class per image (<see cref="Count"/> entries) for a class-conditional model; null samples
    /// unconditionally.</summary>
    public IReadOnlyList<int>? Labels { get; init; }
    /// <summary>Classifier-free guidance weight w ≥ 0 (Ho &amp; Salimans 2022, eq. 6); needs
    /// <see cref="Labels"/>.</summary>
    public double Guidance { get; init; }
    /// <summary>
    /// Images per forward pass at most; larger requests run in batches (twice the images per pass with guidance). Null:
    /// as many as fit in <see cref="ImageGenerator.DefaultMemoryBudget"/>.
    /// </summary>
    public int? MaxBatchSize { get; init; }

    /// <summary>Complete known images where a mask says (RePaint); null for none.</summary>
    public Inpainting? Inpainting { get; init; }
    /// <summary>Start from noised inputs (SDEdit); null for none.</summary>
    public ImageToImage? ImageToImage { get; init; }
    /// <summary>Frames between two samples (spherical interpolation of their noise); null for none.</summary>
    public Interpolation? Interpolation { get; init; }

    /// <summary>
    /// What the request makes: "sampling", "inpainting", "image-to-image" or "interpolation" ("several edits": an error
    /// in Plan).
    /// </summary>
    public string Kind => (Inpainting, ImageToImage, Interpolation) switch
    {
        (null, null, null) => "sampling",
        (not null, null, null) => "inpainting",
        (null, not null, null) => "image-to-image",
        (null, null, not null) => "interpolation",
        _ => "several edits",
    };

    /// <summary>Class i mod <paramref name="classes"/> for image i: with as many images per grid row as classes, one
    /// class per column.</summary>
    public static int[] CyclingClasses(int count, int classes) => Enumerable.Range(0, count).Select(i => i % Math.Max(1, classes)).ToArray();

    /// <summary>
    /// Checks the request against a model with <paramref name="model"/>'s options (before any model is loaded, e.g. by
    /// a server): counts, guidance, and the labels the model can take. The sampler is checked when it is created.
    /// </summary>
    /// <exception cref="ArgumentException">A setting out of range or unfit for the model (the message names
    /// it).</exception>
    public void Validate(UNetOptions model)
    {
        if (Count < 1) throw new ArgumentException($"count must be >= 1, got {Count}");
        if (FirstIndex < 0) throw new ArgumentException($"the first image index must be >= 0, got {FirstIndex}");
        if (MaxBatchSize < 1) throw new ArgumentException($"the batch size must be >= 1, got {MaxBatchSize}");
        if (!(Guidance >= 0) || !double.IsFinite(Guidance)) throw new ArgumentException($"guidance must be a finite number >= 0, got {Guidance}");
        if (Labels is { } labels)
        {
            if (model.NumClasses <= 0)
                throw new ArgumentException("class labels need a class-conditional model (model_params.num_classes > 0); this one is unconditional");
            if (labels.Count != Count) throw new ArgumentException($"labels: {labels.Count} given for {Count} images (one per image)");
            foreach (var y in labels)
                if (y < 0 || y >= model.NumClasses) throw new ArgumentException($"class {y}: the model was trained on classes 0..{model.NumClasses - 1}");
        }
        else if (Guidance != 0 && Interpolation is not { FromClass: not null })
        {
            throw new ArgumentException("guidance needs class labels (a class per image)");
        }
    }
}
