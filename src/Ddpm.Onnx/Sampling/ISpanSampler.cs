namespace Ddpm.Onnx.Sampling;

/// <summary>
/// One reverse-process scheme over flat float32 spans of a batch [B·C·H·W]: the model timesteps it visits (noisiest
/// first) and the update from x at step i to x at step i + 1 given ε. The caller supplies each step's Gaussian noise z.
/// </summary>
public interface ISpanSampler
{
    /// <summary>The model timesteps visited, in order (e.g. 999, 998, …, 0).</summary>
    IReadOnlyList<int> Timesteps { get; }

    /// <summary>Whether step <paramref name="index"/> adds noise (needs z).</summary>
    bool UsesNoise(int index);

    /// <summary>
    /// Writes x at step <paramref name="index"/> + 1 into <paramref name="next"/> (which may not overlap the inputs)
    /// from
    /// <paramref name="x"/> and ε_θ(x, Timesteps[index]); <paramref name="noise"/> is z ~ N(0, I) when <see
    /// cref="UsesNoise"/>(index), else ignored (may be empty). Steps of a multistep solver come in order 0, 1, 2, …
    /// </summary>
    void Step(ReadOnlySpan<float> eps, int index, ReadOnlySpan<float> x, ReadOnlySpan<float> noise, Span<float> next);
}
