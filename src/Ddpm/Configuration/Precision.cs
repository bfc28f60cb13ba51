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
