namespace Ddpm.Onnx;

/// <summary>The images of a <see cref="GenerationRequest"/>: float32 [N, C, H, W] clamped to [−1, 1], in image
/// order.</summary>
public sealed record GenerationResult(float[] Images, int Count, int Channels, int Height, int Width, IReadOnlyList<int> Timesteps,
    double Seconds)
{
    /// <summary>uint8 [N, C, H, W]: round((x + 1)·127.5), as a saved PNG holds them.</summary>
    public byte[] ToBytes() => Pixels.ToBytes(Images);

    /// <summary>The images as one PNG grid, <paramref name="perRow"/> to a row with 2 black pixels between
    /// them.</summary>
    public byte[] ToPng(int perRow = 10) => PngGrid.Encode(ToBytes(), Count, Channels, Height, Width, perRow);
}

/// <summary>Conversions from [−1, 1] to bytes.</summary>
public static class Pixels
{
    /// <summary>round((clamp(x, −1, 1) + 1)·127.5) per value (round half to even), the TorchSharp library's
    /// quantisation.</summary>
    public static byte[] ToBytes(ReadOnlySpan<float> x)
    {
        var bytes = new byte[x.Length];
        for (int i = 0; i < x.Length; i++) bytes[i] = (byte)MathF.Round((Math.Clamp(x[i], -1f, 1f) + 1f) * 127.5f);
        return bytes;
    }
}
