using static TorchSharp.torch;

namespace Ddpm.Models;

/// <summary>
/// A 4×4 stride-2 transposed convolution (when up-sampling), concatenation with the skip connection, then
/// (resnet → attention) × layers (reference <c>UpBlock</c>; the input channel count includes the concatenated skip).
/// </summary>
internal sealed class UpBlock : ResnetAttentionLayers
{
    private readonly nn.Module<Tensor, Tensor> up_sample_conv;
    private readonly int _layers;

    /// <param name="attention">Whether each resnet layer is followed by self-attention (the seed: always).</param>
    public UpBlock(long inChannels, long outChannels, int timeEmbDim, bool upSample, int heads, int layers, bool attention)
        : base(nameof(UpBlock), Enumerable.Range(0, layers).Select(i => i == 0 ? inChannels : outChannels),
            outChannels, attention ? layers : 0, timeEmbDim, heads)
    {
        _layers = layers;
        up_sample_conv = upSample ? nn.ConvTranspose2d(inChannels / 2, inChannels / 2, 4, stride: 2, padding: 1) : nn.Identity();
        RegisterComponents();
    }

    /// <param name="timeProjections">One time projection [B, C] per resnet layer
    /// (<see cref="ResnetAttentionLayers.Resnet"/>).</param>
    public Tensor forward(Tensor x, Tensor skip, IReadOnlyList<Tensor> timeProjections)
    {
        using var scope = NewDisposeScope();
        var h = cat([up_sample_conv.forward(x), skip], 1);
        for (int i = 0; i < _layers; i++) h = ResnetThenAttention(i, h, timeProjections[i]);
        return h.MoveToOuterDisposeScope();
    }
}
