using Ddpm.Models;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Models;

/// <summary>
/// The sampling seam on the CPU: <see cref="GraphedForward"/> runs the U-Net eagerly, says why, and returns exactly
/// what the model returns (conditional models and the predictor form included). Only the eager path runs here, so
/// nothing in this class can fail on a real CUDA graph's replay: the graphed path's plumbing and its first-replay check
/// are tested against a fake libtorch (Runtime/CudaGraphShimTests), its numbers need a GPU (scripts/device-check.sh).
/// </summary>
public class GraphedForwardTests
{
    [Fact]
    public void On_the_CPU_it_runs_eagerly_says_why_and_equals_the_model_no_graph_involved()
    {
        using var scope = NewDisposeScope();
        manual_seed(8);
        var options = TestModels.Tiny(8) with { NumClasses = 3 };
        using var model = new UNet(options);
        model.eval();
        using var forward = GraphedForward.Create(model);
        Assert.False(forward.UsesGraphs);
        Assert.Equal("eager (device is cpu)", forward.Description);
        using var off = GraphedForward.Create(model, useGraphs: false);
        Assert.Equal("eager (graphs turned off)", off.Description);

        var g = new TorchSharp.torch.Generator(9);
        var x = randn([4, 1, 8, 8], generator: g);
        var t = tensor(new long[] { 0, 5, 17, 49 });
        var y = tensor(new long[] { 0, 1, 2, 3 });
        Tensor expected, expectedUnlabelled;
        using (no_grad())
        {
            expected = model.forward(x, t, y);
            expectedUnlabelled = model.forward(x, t);
        }
        var actual = forward.Forward(x, t, y);
        Assert.True(actual.eq(expected).all().item<bool>(), "the eager path changed the output");
        Assert.False(actual.requires_grad);
        Assert.True(forward.Predictor()(x, t).eq(expectedUnlabelled).all().item<bool>());
        Assert.True(forward.Predictor(y)(x, t).eq(expected).all().item<bool>());
        Assert.Equal(0, forward.GraphCount);
    }
}
