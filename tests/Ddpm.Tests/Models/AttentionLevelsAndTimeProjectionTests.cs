using Ddpm.Configuration;
using Ddpm.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Models;

public class AttentionLevelsAndTimeProjectionTests
{
    [Fact]
    public void Attention_levels_all_true_is_the_seed_model_and_false_drops_exactly_that_levels_attention()
    {
        using var scope = NewDisposeScope();
        using var seed = new UNet(TestModels.FixtureConfig);
        using var explicitAll = new UNet(TestModels.FixtureConfig with { AttentionLevels = [true, true, true] });
        using var noTop = new UNet(TestModels.FixtureConfig with { AttentionLevels = [false, true, true] });
        var all = seed.state_dict();
        Assert.Equal(all.Keys, explicitAll.state_dict().Keys);
        Assert.Equal(seed.ParameterCount(), explicitAll.ParameterCount());

        // Level 0 is the first down block (28×28, 32 channels) and the last up block (28×28, 16 channels).
        static bool LevelZeroAttention(string key) =>
            (key.StartsWith("downs.0.", StringComparison.Ordinal) || key.StartsWith("ups.2.", StringComparison.Ordinal))
            && (key.Contains(".attentions.", StringComparison.Ordinal) || key.Contains(".attention_norms.", StringComparison.Ordinal));
        var removed = all.Keys.Where(LevelZeroAttention).ToList();
        Assert.Equal(12, removed.Count); // per block: in_proj weight/bias, out_proj weight/bias, norm weight/bias
        Assert.Equal(all.Keys.Where(k => !LevelZeroAttention(k)).OrderBy(k => k, StringComparer.Ordinal),
            noTop.state_dict().Keys.OrderBy(k => k, StringComparer.Ordinal));
        long removedCount = removed.Sum(k => all[k].numel());
        Assert.Equal(4_288 + 1_120, removedCount); // 3·32² + 96 + 32² + 32 + 64, and 3·16² + 48 + 16² + 16 + 32
        Assert.Equal(seed.ParameterCount() - removedCount, noTop.ParameterCount());

        var x = randn(2, 1, 28, 28);
        var eps = noTop.forward(x, tensor(new long[] { 3, 900 }));
        Assert.Equal(x.shape, eps.shape);
        eps.square().mean().backward();
        Assert.All(noTop.parameters(), p => Assert.True(p.grad is not null && isfinite(p.grad).all().item<bool>()));
    }

    [Fact]
    public void The_seed_config_keeps_every_attention_layer()
    {
        using var model = new UNet(new UNetOptions());
        Assert.Equal(10_188_081L, model.ParameterCount());
        var keys = model.state_dict().Keys.Where(k => k.EndsWith("in_proj_weight", StringComparison.Ordinal)).ToList();
        // 3 down and 3 up blocks × 2 layers, 2 mid blocks × 2 layers.
        Assert.Equal(6, keys.Count(k => k.StartsWith("downs.", StringComparison.Ordinal)));
        Assert.Equal(6, keys.Count(k => k.StartsWith("ups.", StringComparison.Ordinal)));
        Assert.Equal(4, keys.Count(k => k.StartsWith("mids.", StringComparison.Ordinal)));
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void The_batched_time_projection_equals_every_resnet_layers_own_silu_linear(bool seedConfig)
    {
        using var scope = NewDisposeScope();
        manual_seed(11);
        using var model = new UNet(seedConfig ? new UNetOptions() : TestModels.FixtureConfig with { AttentionLevels = [false, true, true] });
        int dim = model.Options.TimeEmbDim;
        var tEmb = randn(5, dim);
        var layers = model.Blocks.SelectMany(b => b.TimeProjectionLayers).ToList();
        var batched = model.TimeProjections(tEmb);
        Assert.Equal(layers.Count, batched.Length);
        // Reference: each layer's own SiLU → Linear, as the PyTorch model computes it.
        var separate = layers.Select(l => l.forward(tEmb)).ToArray();
        for (int k = 0; k < separate.Length; k++)
        {
            Assert.Equal(separate[k].shape, batched[k].shape);
            double scale = separate[k].abs().max().item<float>();
            double diff = (batched[k] - separate[k]).abs().max().item<float>();
            Assert.True(diff <= 4 * 1.2e-7 * scale, $"layer {k}: |batched − separate| = {diff:E2} exceeds float32 rounding of {scale:F3}");
        }

        // Gradients reach each layer's own weights, equal to the separate path's.
        var r = batched.Select(b => randn_like(b)).ToArray();
        var linears = model.Blocks.SelectMany(b => b.TimeLinears).ToList();
        stack(batched.Zip(r, (b, w) => (b * w).sum()).ToArray()).sum().backward();
        var batchedGrads = linears.Select(l => l.weight!.grad!.clone()).ToList();
        foreach (var l in linears) l.weight!.grad = null;
        stack(separate.Zip(r, (s, w) => (s * w).sum()).ToArray()).sum().backward();
        for (int k = 0; k < linears.Count; k++)
        {
            var g = linears[k].weight!.grad!;
            double scale = g.abs().max().item<float>();
            Assert.True(scale > 0);
            Assert.True((batchedGrads[k] - g).abs().max().item<float>() <= 4 * 1.2e-7 * scale, $"layer {k}: gradients differ");
        }
    }
}
