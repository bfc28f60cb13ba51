namespace Ddpm.Configuration;

/// <summary><c>train_params.precision</c>: the number format of the forward and backward passes.</summary>
public enum Precision
{
    /// <summary>float32 throughout (on CUDA, matrix products and convolutions may use TF32 tensor cores).</summary>
    [AlsoSpelled("float32")] Fp32,
    /// <summary>
    /// bfloat16 weights and activations for the forward and backward passes, float32 master weights, Adam state, loss
    /// and EMA (mixed precision without autocast, which TorchSharp lacks).
    /// </summary>
    [AlsoSpelled("bfloat16")] Bf16,
}

/// <summary>The spellings of <see cref="Precision"/> in configs and on the command line.</summary>
public static class PrecisionNames
{
    /// <summary>
    /// fp32 (or float32) and bf16 (or bfloat16), any case; false for anything else. The same as
    /// <see cref="EnumNames.TryParse{T}"/>, kept for the callers not yet switched to it.
    /// </summary>
    public static bool TryParse(string? text, out Precision precision) => EnumNames.TryParse(text, out precision);
}
