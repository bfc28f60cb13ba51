namespace Ddpm.Configuration;

/// <summary><c>train_params.precision</c>: the number format of the forward and backward passes.</summary>
public enum Precision
{
    /// <summary>float32 throughout (on CUDA, matrix products and convolutions may use TF32 tensor cores).</summary>
    Fp32,
    /// <summary>
    /// bfloat16 weights and activations for the forward and backward passes, float32 master weights, Adam state, loss and
    /// EMA (mixed precision without autocast, which TorchSharp lacks).
    /// </summary>
    Bf16,
}

/// <summary>The spellings of <see cref="Precision"/> in configs and on the command line.</summary>
public static class PrecisionNames
{
    /// <summary>fp32 (or float32) and bf16 (or bfloat16), any case; false for anything else.</summary>
    public static bool TryParse(string? text, out Precision precision)
    {
        switch (text?.ToLowerInvariant())
        {
            case "fp32" or "float32": precision = Precision.Fp32; return true;
            case "bf16" or "bfloat16": precision = Precision.Bf16; return true;
            default: precision = default; return false;
        }
    }
}
