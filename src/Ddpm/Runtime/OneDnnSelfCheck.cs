using static TorchSharp.torch;

namespace Ddpm.Runtime;

/// <summary>
/// Compares oneDNN's fp32 convolutions with float64 references (computed by libtorch's own kernels; oneDNN has no
/// float64 path) on the shapes it got wrong on CPUs that hide their cache hierarchy: the input gradient of 3×3
/// convolutions to 1 and 24 channels, and a 48-channel 4×4 stride-2 transposed convolution. A few milliseconds.
/// </summary>
internal static class OneDnnSelfCheck
{
    public static bool Passes()
    {
        using var scope = NewDisposeScope();
        using var noGradGuard = enable_grad();
        var generator = new TorchSharp.torch.Generator(1234);
        return InputGradientIsExact(16, 1, generator) && InputGradientIsExact(16, 24, generator)
            && TransposedOutputIsExact(48, generator);
    }

    private static bool InputGradientIsExact(long inChannels, long outChannels, TorchSharp.torch.Generator g)
    {
        var x = randn(new long[] { 4, inChannels, 8, 8 }, generator: g).requires_grad_(true);
        var weight = randn(new long[] { outChannels, inChannels, 3, 3 }, generator: g) * 0.1;
        var gradOut = randn(new long[] { 4, outChannels, 8, 8 }, generator: g);
        var y = nn.functional.conv2d(x, weight, padding: new long[] { 1, 1 });
        var got = autograd.grad(new[] { y }, new[] { x }, new[] { gradOut })[0];
        var expected = nn.functional.conv_transpose2d(gradOut.to(ScalarType.Float64), weight.to(ScalarType.Float64),
            padding: new long[] { 1, 1 });
        return Close(got, expected);
    }

    private static bool TransposedOutputIsExact(long channels, TorchSharp.torch.Generator g)
    {
        var x = randn(new long[] { 4, channels, 4, 4 }, generator: g);
        var weight = randn(new long[] { channels, channels, 4, 4 }, generator: g) * 0.1;
        var got = nn.functional.conv_transpose2d(x, weight, strides: new long[] { 2, 2 }, padding: new long[] { 1, 1 });
        var expected = nn.functional.conv_transpose2d(x.to(ScalarType.Float64), weight.to(ScalarType.Float64),
            strides: new long[] { 2, 2 }, padding: new long[] { 1, 1 });
        return Close(got, expected);
    }

    private static bool Close(Tensor got, Tensor expected)
    {
        var error = ((got.to(ScalarType.Float64) - expected).norm() / expected.norm()).item<double>();
        return error < 1e-5; // float32 accumulation over ≤ 768 terms: ~1e-7 relative; the failures were ≥ 1e-1 or NaN
    }
}
