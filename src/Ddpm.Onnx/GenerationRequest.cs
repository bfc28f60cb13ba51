using Ddpm.Onnx.Sampling;

namespace Ddpm.Onnx;

/// <summary>
/// Images <see cref="FirstIndex"/> … <see cref="FirstIndex"/> + <see cref="Count"/> − 1 of <see cref="Seed"/>'s
/// sequence: image i depends only on (noise, i, sampler, labels), not on how the request is split into batches.
/// </summary>
public sealed record GenerationRequest
{
    public int Count { get; init; } = 1;
    public long FirstIndex { get; init; }
    /// <summary>Seed of <see cref="SeededNoise"/>, used unless <see cref="Noise"/> is given.</summary>
    public long Seed { get; init; }
    public SamplerSettings Sampler { get; init; } = new();
    /// <summary>A class per image for a class-conditional model; null samples unconditionally (the null
    /// label).</summary>
    public IReadOnlyList<int>? Labels { get; init; }
    /// <summary>Classifier-free guidance weight w ≥ 0 (Ho &amp; Salimans 2022, eq. 6); needs <see
    /// cref="Labels"/>.</summary>
    public double Guidance { get; init; }
    /// <summary>Images per forward pass at most (twice that many with guidance).</summary>
    public int MaxBatchSize { get; init; } = 100;
    /// <summary>Where x_T and the step noise come from; null = <see cref="SeededNoise"/>(<see cref="Seed"/>).</summary>
    public INoiseSource? Noise { get; init; }
}
