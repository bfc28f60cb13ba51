using static TorchSharp.torch;

namespace Ddpm.Models;

/// <summary>(resnet → attention) × layers, then a 4×4 stride-2 convolution when down-sampling (reference
/// <c>DownBlock</c>).</summary>
internal sealed class DownBlock : ResnetAttentionLayers
{
    private readonly nn.Module<Tensor, Tensor> down_sample_conv;
    private readonly int _layers;

    /// <param name="attention">Whether each resnet layer is followed by self-attention (the seed: always).</param>
    public DownBlock(long inChannels, long outChannels, int timeEmbDim, bool downSample, int heads, int layers, bool attention)
        : base(nameof(DownBlock), Enumerable.Range(0, layers).Select(i => i == 0 ? inChannels : outChannels),
            outChannels, attention ? layers : 0, timeEmbDim, heads)
    {
        _layers = layers;
        down_sample_conv = downSample ? nn.Conv2d(outChannels, outChannels, 4, stride: 2, padding: 1) : nn.Identity();
        RegisterComponents();
    }

    /// <param name="timeProjections">One time projection [B, C] per resnet layer
    /// (<see cref="ResnetAttentionLayers.Resnet"/>).</param>
    public Tensor forward(Tensor x, IReadOnlyList<Tensor> timeProjections)
    {
        using var scope = NewDisposeScope();
        var h = x;
        for (int i = 0; i < _layers; i++) h = ResnetThenAttention(i, h, timeProjections[i]);
        return down_sample_conv.forward(h).MoveToOuterDisposeScope();
    }
}
