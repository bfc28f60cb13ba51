using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Diffusion;

/// <summary>Closed-form Gaussian quantities the seed derives for the variational bound.</summary>
public static class GaussianMath
{
    /// <summary>
    /// KL(N(μ1, σ1²) ‖ N(μ2, σ2²)) = ln(σ2/σ1) − ½ + (σ1² + (μ1 − μ2)²)/(2σ2²), elementwise, in nats,
    /// with variances given as logarithms (seed: "两个高斯分布的KL散度").
    /// </summary>
    public static Tensor NormalKl(Tensor mean1, Tensor logVar1, Tensor mean2, Tensor logVar2) =>
        0.5 * (logVar2 - logVar1 - 1.0 + (logVar1 - logVar2).exp() + (mean1 - mean2).square() * (-logVar2).exp());

    /// <summary>The same for plain numbers.</summary>
    public static double NormalKl(double mean1, double var1, double mean2, double var2) =>
        0.5 * Math.Log(var2 / var1) - 0.5 + (var1 + (mean1 - mean2) * (mean1 - mean2)) / (2 * var2);
}
