using static TorchSharp.torch;

namespace Ddpm.Imaging;

/// <summary>Pixel conversions shared by the metrics.</summary>
public static class Pixels
{
    /// <summary>
    /// What a saved PNG keeps of x ∈ ℝ: clamp to [−1, 1], round to the 256 levels k/127.5 − 1 (as <c>ImageGrid</c> and
    /// save_image do). Generated images are measured after this, so a checkpoint and the PNGs it writes score the same.
    /// </summary>
    public static Tensor Quantize(Tensor x)
    {
        using var scope = NewDisposeScope();
        return x.to(float32).clamp(-1, 1).add(1).mul(127.5).round().div(127.5).sub(1).MoveToOuterDisposeScope();
    }

    /// <summary>Images in [−1, 1] → uint8 0..255 (after <see cref="Quantize"/>), for IDX/PNG output.</summary>
    public static Tensor ToBytes(Tensor x)
    {
        using var scope = NewDisposeScope();
        return x.to(float32).clamp(-1, 1).add(1).mul(127.5).round().to(ScalarType.Byte).MoveToOuterDisposeScope();
    }
}
