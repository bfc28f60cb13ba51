using Ddpm.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Models;

/// <summary>
/// Head padding for bf16 attention on CUDA: zero-padding q, k, v to a multiple of 8 and scaling q by √(d′/d) leaves
/// softmax(QKᵀ/√d)V unchanged. Checked on the CPU in float64 and float32, where the padded path can be forced.
/// </summary>
public class SelfAttentionPaddingTests
{
    [Theory]
    [InlineData(4, 1e-13)] // the seed's last up block: 16 channels / 4 heads
    [InlineData(3, 1e-13)]
    [InlineData(12, 1e-13)]
    public void Padding_heads_to_a_multiple_of_8_and_prescaling_q_keeps_attention_exact_in_float64(int d, double tolerance)
    {
        using var scope = NewDisposeScope();
        var g = new TorchSharp.torch.Generator(3);
        var (q, k, v) = (randn([2, 4, 49, d], dtype: float64, generator: g) * 2, randn([2, 4, 49, d], dtype: float64, generator: g),
            randn([2, 4, 49, d], dtype: float64, generator: g));
        var plain = SelfAttention.Attend(q, k, v, pad: false);
        var padded = SelfAttention.Attend(q, k, v, pad: true);
        Assert.Equal(plain.shape, padded.shape);
        double diff = (plain - padded).abs().max().item<double>();
        Assert.True(diff <= tolerance, $"head size {d}: padded attention differs by {diff:E2}");
        // Not vacuous: without the √(d′/d) scale the padded kernel computes a different function.
        long dp = (d + 7) / 8 * 8;
        var widen = new long[] { 0, dp - d };
        var unscaled = nn.functional.scaled_dot_product_attention(nn.functional.pad(q, widen), nn.functional.pad(k, widen),
            nn.functional.pad(v, widen)).narrow(-1, 0, d);
        Assert.True((plain - unscaled).abs().max().item<double>() > 1e-3);
    }

    [Fact]
    public void In_float32_the_padded_path_agrees_to_rounding_and_a_multiple_of_8_is_left_alone()
    {
        using var scope = NewDisposeScope();
        var g = new TorchSharp.torch.Generator(4);
        var (q, k, v) = (randn([2, 4, 196, 4], generator: g), randn([2, 4, 196, 4], generator: g), randn([2, 4, 196, 4], generator: g));
        var plain = SelfAttention.Attend(q, k, v, pad: false);
        double diff = (plain - SelfAttention.Attend(q, k, v, pad: true)).abs().max().item<float>();
        Assert.True(diff <= 2e-6 * plain.abs().max().item<float>(), $"float32 padded attention differs by {diff:E2}");

        var (q8, k8, v8) = (randn([1, 2, 10, 8], generator: g), randn([1, 2, 10, 8], generator: g), randn([1, 2, 10, 8], generator: g));
        Assert.True(SelfAttention.Attend(q8, k8, v8, pad: true).eq(SelfAttention.Attend(q8, k8, v8, pad: false)).all().item<bool>());
    }

    [Fact]
    public void Only_bf16_or_fp16_on_CUDA_is_padded()
    {
        using var scope = NewDisposeScope();
        Assert.False(SelfAttention.PadsHeads(zeros(1, 4, 16)));
        Assert.False(SelfAttention.PadsHeads(zeros(1, 4, 16, dtype: ScalarType.BFloat16)));
        Assert.False(SelfAttention.PadsHeads(zeros(1, 4, 16, dtype: ScalarType.Float16)));
    }
}
