using static TorchSharp.torch;

namespace Ddpm.Models;

/// <summary>Sinusoidal timestep embedding, exactly as the seed and the reference's <c>get_time_embedding</c>.</summary>
internal static class TimeEmbedding
{
    /// <summary>
    /// emb(t) = [sin(t / 10000^(i/(d/2))), cos(t / 10000^(i/(d/2)))] for i = 0..d/2−1 (half sin, half cos).
    /// <paramref name="t"/>: [B] integer timesteps; returns float32 [B, d].
    /// </summary>
    public static Tensor Sinusoidal(Tensor t, int dim)
    {
        if (dim % 2 != 0) throw new ArgumentException($"time embedding dimension must be even, got {dim}", nameof(dim));
        int half = dim / 2;
        using var scope = NewDisposeScope();
        var factor = pow(10000.0f, arange(0, half, dtype: float32, device: t.device) / half);
        var arg = t.to(float32).unsqueeze(1) / factor;
        return cat([arg.sin(), arg.cos()], 1).MoveToOuterDisposeScope();
    }
}
