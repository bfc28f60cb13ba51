using static TorchSharp.torch;

namespace Ddpm.Models;

/// <summary>resnet, then (attention → resnet) × layers (reference <c>MidBlock</c>).</summary>
internal sealed class MidBlock : ResnetAttentionLayers
{
    private readonly int _layers;

    public MidBlock(long inChannels, long outChannels, int timeEmbDim, int heads, int layers)
        : base(nameof(MidBlock), Enumerable.Range(0, layers + 1).Select(i => i == 0 ? inChannels : outChannels),
            outChannels, layers, timeEmbDim, heads)
    {
        _layers = layers;
        RegisterComponents();
    }

    /// <param name="timeProjections">One time projection [B, C] per resnet layer
    /// (<see cref="ResnetAttentionLayers.Resnet"/>).</param>
    public Tensor forward(Tensor x, IReadOnlyList<Tensor> timeProjections)
    {
        using var scope = NewDisposeScope();
        var h = Resnet(0, x, timeProjections[0]);
        for (int i = 0; i < _layers; i++) h = Resnet(i + 1, Attention(i, h), timeProjections[i + 1]);
        return h.MoveToOuterDisposeScope();
    }
}
