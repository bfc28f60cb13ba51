namespace Ddpm.Onnx.Sampling;

internal static class SpanChecks
{
    public static void SameLength(ReadOnlySpan<float> eps, ReadOnlySpan<float> x, Span<float> next)
    {
        if (eps.Length != x.Length || next.Length != x.Length)
            throw new ArgumentException($"eps ({eps.Length}), x ({x.Length}) and next ({next.Length}) must have the same length");
    }

    public static void Noise(ReadOnlySpan<float> noise, int length, int index)
    {
        if (noise.Length != length)
            throw new ArgumentException($"step {index} needs noise z of length {length}, got {noise.Length}", nameof(noise));
    }
}
