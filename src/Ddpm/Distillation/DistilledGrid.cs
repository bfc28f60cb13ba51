using System.Globalization;
using System.Text.Json.Serialization;
using Ddpm.Sampling;

namespace Ddpm.Distillation;

/// <summary>
/// What a distilled checkpoint was trained to do, stored in its manifest
/// (<see cref="Training.CheckpointManifest.Distilled"/>): DDIM (η = 0) over <see cref="Timesteps"/> with the teacher's
/// guidance built in. <see cref="Sampling.ImageGenerator"/> samples such a checkpoint on this grid unless asked for
/// something else, and refuses another number of steps.
/// </summary>
public sealed record DistilledGrid
{
    /// <summary>How the student was made: "progressive" (Salimans &amp; Ho 2022).</summary>
    public string Method { get; init; } = "progressive";

    /// <summary>The model timesteps the student visits, noisiest first; after the last one it outputs x̂_0.</summary>
    public int[] Timesteps { get; init; } = [];

    /// <summary>Model calls per image.</summary>
    [JsonIgnore]
    public int Steps => Timesteps.Length;

    /// <summary>
    /// The classifier-free guidance weight w of the teacher the student learned (0 for an unconditional or unguided
    /// teacher). With a class label the student's one forward pass is the guided teacher's; without one (the null
    /// label) it is the teacher's unconditional model.
    /// </summary>
    public double Guidance { get; init; }

    /// <summary>Whether each DDIM step clips x̂_0 to [−1, 1], as the teacher's steps did during distillation.</summary>
    public bool ClipX0 { get; init; }

    /// <summary>The grid as "199/149/99/49" for messages and reports.</summary>
    public string Describe() => string.Join('/', Timesteps);

    /// <summary>
    /// The sampler a request for this student runs: DDIM (η = 0) on <see cref="Timesteps"/>, x̂_0 clipped as during
    /// distillation (or when asked), whatever sampler family <paramref name="requested"/> names (a caller's default).
    /// Another number of steps, a spacing, η, thresholding or another solver is refused, naming the grid; so is a class
    /// label with a guidance weight other than <see cref="Guidance"/> (built in; without labels the null label
    /// samples).
    /// </summary>
    /// <exception cref="ArgumentException">A request the student was not trained for.</exception>
    public SamplerOptions SamplerFor(SamplerOptions requested, bool labels, double guidance)
    {
        var s = requested;
        string grid = $"DDIM over the {Steps} timesteps {Describe()}";
        if (s.Steps is { } steps && steps != Steps)
            throw new ArgumentException($"this checkpoint was distilled for {Steps} step{(Steps == 1 ? "" : "s")} " +
                $"({grid}); ask for {Steps} or leave the number out (its teacher samples with other step counts)");
        bool ownGrid = s.Timesteps is null || s.Timesteps.SequenceEqual(Timesteps);
        bool defaultKind = s.Kind is SamplerKind.Ddim or SamplerKind.Ddpm or SamplerOptions.RecommendedKind;
        if (!defaultKind || s.Eta != 0 || s.Spacing is not null || s.DynamicThreshold is not null || !ownGrid)
            throw new ArgumentException($"this checkpoint was distilled for {grid}; " +
                "leave the sampler, spacing, η and thresholding at their defaults");
        if (labels && guidance != Guidance)
        {
            var w = Guidance.ToString(CultureInfo.InvariantCulture);
            throw new ArgumentException($"this checkpoint was distilled with guidance w = {w} built in: " +
                $"ask for guidance {w} with class labels, or for no labels (its unconditional model)");
        }
        return new SamplerOptions
        {
            Kind = SamplerKind.Ddim, Timesteps = Timesteps, ClipX0 = s.ClipX0 || ClipX0, Variance = s.Variance,
        };
    }
}
