using Ddpm.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Models;

public class SelfAttentionTests
{
    [Fact]
    public void Self_attention_equals_the_explicit_multi_head_formula()
    {
        using var scope = NewDisposeScope();
        const int b = 2, l = 10, c = 16, heads = 4, d = c / heads;
        manual_seed(17);
        using var attention = new SelfAttention(c, heads);
        var p = attention.named_parameters().ToDictionary(x => x.name, x => x.parameter);
        Assert.Equal(new[] { "in_proj_bias", "in_proj_weight", "out_proj.bias", "out_proj.weight" }, p.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(new long[] { 3 * c, c }, p["in_proj_weight"].shape);
        using (no_grad())
        {
            // Non-zero biases, so a mix-up of the q/k/v slices or a dropped bias would show.
            p["in_proj_bias"].copy_(randn(3 * c) * 0.5);
            p["out_proj.bias"].copy_(randn(c) * 0.5);
        }
        var x = randn(b, l, c, dtype: float32);

        Tensor actual;
        using (no_grad()) actual = attention.forward(x);

        // Reference in float64: PyTorch packs [W_q; W_k; W_v] in in_proj_weight.
        var w = p["in_proj_weight"].detach().to(float64);
        var bias = p["in_proj_bias"].detach().to(float64);
        var xd = x.to(float64);
        var outputs = new List<Tensor>();
        for (int batch = 0; batch < b; batch++)
        {
            var xb = xd[batch]; // [L, C]
            var q = xb.matmul(w[..c].t()) + bias[..c];
            var k = xb.matmul(w[c..(2 * c)].t()) + bias[c..(2 * c)];
            var v = xb.matmul(w[(2 * c)..].t()) + bias[(2 * c)..];
            var headOutputs = new List<Tensor>();
            for (int h = 0; h < heads; h++)
            {
                var qh = q[.., (h * d)..((h + 1) * d)];
                var kh = k[.., (h * d)..((h + 1) * d)];
                var vh = v[.., (h * d)..((h + 1) * d)];
                var weights = (qh.matmul(kh.t()) / Math.Sqrt(d)).softmax(-1);
                headOutputs.Add(weights.matmul(vh));
            }
            var merged = cat(headOutputs, 1); // [L, C]
            outputs.Add(merged.matmul(p["out_proj.weight"].detach().to(float64).t()) + p["out_proj.bias"].detach().to(float64));
        }
        var expected = stack(outputs);

        Assert.Equal(expected.shape, actual.shape);
        double maxDiff = (actual.to(float64) - expected).abs().max().item<double>();
        double maxRef = expected.abs().max().item<double>();
        Assert.True(maxDiff <= 1e-5 * maxRef, $"max |diff| {maxDiff:E3} > 1e-5 · {maxRef:E3}");
    }

    [Fact]
    public void Heads_that_do_not_divide_the_channels_are_rejected()
    {
        Assert.Throws<ArgumentException>(() => new SelfAttention(16, 3));
    }
}
