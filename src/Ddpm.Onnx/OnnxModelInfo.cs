using System.Globalization;

namespace Ddpm.Onnx;

/// <summary>What the U-Net outputs.</summary>
public enum PredictionType
{
    /// <summary>The noise ε (Ho et al. 2020).</summary>
    Epsilon,
    /// <summary>The clean image x_0.</summary>
    X0,
    /// <summary>v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (Salimans &amp; Ho 2022).</summary>
    V,
}

/// <summary>
/// The facts a sampler needs about an exported model, read from its metadata_props (written by <c>ddpm export --to
/// model.onnx</c>, keys <c>ddpm.*</c>): what it predicts, its β schedule, the image shape and its classes.
/// </summary>
public sealed record OnnxModelInfo
{
    /// <summary>The layout version this reader knows.</summary>
    public const int SupportedFormat = 1;

    public required PredictionType Prediction { get; init; }
    /// <summary>β_0..β_{T−1} in float64.</summary>
    public required IReadOnlyList<double> Betas { get; init; }
    public required int Channels { get; init; }
    public required int Height { get; init; }
    public required int Width { get; init; }
    /// <summary>0 for an unconditional model (no labels input); else the model takes labels 0..NumClasses−1 and
    /// ∅.</summary>
    public required int NumClasses { get; init; }
    /// <summary>The label meaning "no class" (∅), fed for unconditional sampling and guidance.</summary>
    public required long NullLabel { get; init; }
    /// <summary>The training config as YAML, when the export carried it.</summary>
    public string? Config { get; init; }
    /// <summary>Where the weights came from, when the export said.</summary>
    public string? Source { get; init; }

    public int ImageSize => Channels * Height * Width;
    public bool IsConditional => NumClasses > 0;

    /// <summary>
    /// Reads the <c>ddpm.*</c> keys of <paramref name="metadata"/>; <paramref name="what"/> names the file in errors.
    /// </summary>
    /// <exception cref="InvalidDataException">A key missing or malformed (named), or another format
    /// version.</exception>
    public static OnnxModelInfo FromMetadata(IReadOnlyDictionary<string, string> metadata, string what)
    {
        var inv = CultureInfo.InvariantCulture;
        string Get(string key) => metadata.TryGetValue(key, out var v) ? v
            : throw new InvalidDataException($"{what}: no '{key}' in the model's metadata (export it with 'ddpm export --to model.onnx')");
        InvalidDataException Bad(string key, string problem) => new($"{what}: metadata '{key}' {problem}");

        if (!int.TryParse(Get("ddpm.format"), NumberStyles.Integer, inv, out int format) || format != SupportedFormat)
            throw Bad("ddpm.format", $"is '{metadata["ddpm.format"]}'; this library reads format {SupportedFormat}");
        var prediction = Get("ddpm.prediction").ToLowerInvariant() switch
        {
            "epsilon" or "eps" => PredictionType.Epsilon,
            "x0" or "x_0" or "sample" => PredictionType.X0,
            "v" => PredictionType.V,
            var other => throw Bad("ddpm.prediction", $"is '{other}' (expected epsilon, x0 or v)"),
        };
        var betas = new List<double>();
        foreach (var part in Get("ddpm.betas").Split(','))
        {
            if (!double.TryParse(part, NumberStyles.Float, inv, out double b) || !(b > 0 && b < 1))
                throw Bad("ddpm.betas", $"holds '{part}'; every β must be a number in (0, 1)");
            betas.Add(b);
        }
        var shape = Get("ddpm.image_shape").Split(',');
        if (shape.Length != 3 || !shape.All(s => int.TryParse(s, NumberStyles.Integer, inv, out int d) && d > 0))
            throw Bad("ddpm.image_shape", $"is '{metadata["ddpm.image_shape"]}' (expected C,H,W)");
        if (!int.TryParse(Get("ddpm.num_classes"), NumberStyles.Integer, inv, out int classes) || classes < 0)
            throw Bad("ddpm.num_classes", "is not a count >= 0");
        if (!long.TryParse(Get("ddpm.null_label"), NumberStyles.Integer, inv, out long nullLabel))
            throw Bad("ddpm.null_label", "is not an integer");
        return new OnnxModelInfo
        {
            Prediction = prediction,
            Betas = betas,
            Channels = int.Parse(shape[0], inv),
            Height = int.Parse(shape[1], inv),
            Width = int.Parse(shape[2], inv),
            NumClasses = classes,
            NullLabel = nullLabel,
            Config = metadata.GetValueOrDefault("ddpm.config"),
            Source = metadata.GetValueOrDefault("ddpm.source"),
        };
    }
}
