namespace Ddpm.Sampling;

/// <summary>
/// A path between two samples: frame i of <see cref="Frames"/> takes f = i/(F − 1) of the way from image
/// <see cref="FromIndex"/> of the request's seed to image <see cref="ToIndex"/> of <see cref="ToSeed"/>. Every noise
/// the sampler draws (x_T and each step's z) is the spherical interpolation of the two images' noises (Shoemake 1985;
/// as in DDIM, Song et al. 2021, §5.3), which keeps it N(0, I)-like, so frame 0 and frame F − 1 are the two samples
/// themselves and the path is continuous in f. Deterministic samplers (DDIM η = 0, DPM-Solver++(2M), UniPC) vary only
/// x_T and give the smoothest path. A request's images are frames FirstIndex … FirstIndex + Count − 1.
/// </summary>
public sealed record Interpolation
{
    /// <summary>Frames F ≥ 2 of the whole path (endpoints included).</summary>
    public int Frames { get; init; } = 8;

    /// <summary>Image index of the start in the request's seed's sequence.</summary>
    public long FromIndex { get; init; }

    /// <summary>Seed of the end.</summary>
    public long ToSeed { get; init; }

    /// <summary>Image index of the end in <see cref="ToSeed"/>'s sequence.</summary>
    public long ToIndex { get; init; }

    /// <summary>
    /// Classes of the two ends for a class-conditional model (both or neither; the request's Labels stay null). Between
    /// two classes the model's ε is mixed, (1 − f)·ε(x, a) + f·ε(x, b): the score of p(x | a)^{1−f} p(x | b)^f, Liu et
    /// al. 2022's conjunction. The class embedding is not interpolated: the network never saw points between its rows.
    /// </summary>
    public int? FromClass { get; init; }

    /// <inheritdoc cref="FromClass"/>
    public int? ToClass { get; init; }

    /// <summary>f of frame <paramref name="frame"/>: exactly 0 for the first and 1 for the last.</summary>
    public double Fraction(long frame) => frame >= Frames - 1 ? 1.0 : (double)frame / (Frames - 1);
}
