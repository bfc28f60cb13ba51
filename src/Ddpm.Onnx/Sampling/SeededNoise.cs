namespace Ddpm.Onnx.Sampling;

/// <summary>
/// Where a generation's Gaussian noise comes from: x_T and each step's z for a batch of images given by their index in
/// the request's sequence. Injectable, so a test can feed the noise another implementation drew.
/// </summary>
public interface INoiseSource
{
    /// <summary>Fills <paramref name="destination"/> [count, C, H, W] with x_T ~ N(0, I) of images firstImage …
    /// firstImage + count − 1.</summary>
    void Initial(long firstImage, int count, Span<float> destination);

    /// <summary>Fills <paramref name="destination"/> with the z ~ N(0, I) of step <paramref name="step"/> for the same
    /// images.</summary>
    void Step(long firstImage, int count, int step, Span<float> destination);
}

/// <summary>
/// This library's own noise: a stream per (seed, image, draw) (draw 0 = x_T, draw s + 1 = step s), so an image is the
/// same in any batch and whichever steps use noise. Each stream is xoshiro128** (Blackman &amp; Vigna 2018) seeded
/// through a 32-bit SplitMix-style mixer, and turned into normals by Box–Muller in float64. Only 32-bit integer
/// operations, so the web page (JavaScript, Math.imul) draws the same numbers. The seed is folded to 32 bits.
/// </summary>
public sealed class SeededNoise(long seed) : INoiseSource
{
    private readonly uint _seed = (uint)seed ^ (uint)((ulong)seed >> 32);

    public void Initial(long firstImage, int count, Span<float> destination) => Fill(firstImage, count, 0, destination);

    public void Step(long firstImage, int count, int step, Span<float> destination) => Fill(firstImage, count, (uint)step + 1, destination);

    private void Fill(long firstImage, int count, uint draw, Span<float> destination)
    {
        if (count < 1 || destination.Length % count != 0)
            throw new ArgumentException($"{destination.Length} values do not split into {count} images", nameof(destination));
        int per = destination.Length / count;
        for (int j = 0; j < count; j++) Normals(_seed, firstImage + j, draw, destination.Slice(j * per, per));
    }

    /// <summary>The normals of stream (seed, image, draw), as many as <paramref name="destination"/> holds.</summary>
    internal static void Normals(uint seed, long image, uint draw, Span<float> destination)
    {
        uint key = Mix(Mix(Mix(seed) ^ ((uint)image ^ (uint)((ulong)image >> 32))) ^ draw);
        uint s0 = Mix(key), s1 = Mix(key ^ 0x85EBCA6Bu), s2 = Mix(key ^ 0xC2B2AE35u), s3 = Mix(key ^ 0x27D4EB2Fu);
        if ((s0 | s1 | s2 | s3) == 0) s0 = 1;
        uint Next()
        {
            uint result = RotateLeft(s1 * 5, 7) * 9;
            uint t = s1 << 9;
            s2 ^= s0;
            s3 ^= s1;
            s1 ^= s2;
            s0 ^= s3;
            s2 ^= t;
            s3 = RotateLeft(s3, 11);
            return result;
        }
        for (int i = 0; i < destination.Length; i += 2)
        {
            double u1 = ((Next() >> 8) + 0.5) / 16777216.0; // (0, 1): the log is finite
            double u2 = (Next() >> 8) / 16777216.0;
            double r = Math.Sqrt(-2 * Math.Log(u1)), theta = 2 * Math.PI * u2;
            destination[i] = (float)(r * Math.Cos(theta));
            if (i + 1 < destination.Length) destination[i + 1] = (float)(r * Math.Sin(theta));
        }
    }

    /// <summary>A 32-bit SplitMix-style finaliser (golden-ratio increment, two multiply-xorshift rounds).</summary>
    internal static uint Mix(uint z)
    {
        z += 0x9E3779B9u;
        z ^= z >> 16;
        z *= 0x21F0AAADu;
        z ^= z >> 15;
        z *= 0x735A2D97u;
        z ^= z >> 15;
        return z;
    }

    private static uint RotateLeft(uint x, int k) => (x << k) | (x >> (32 - k));
}
