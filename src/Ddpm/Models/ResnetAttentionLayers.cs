using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Models;

/// <summary>
/// The resnet and attention layers every block of the reference U-Net is made of, registered under the reference's
/// state_dict names (<c>resnet_conv_first</c>, <c>t_emb_layers</c>, <c>resnet_conv_second</c>,
/// <c>residual_input_conv</c>, <c>attention_norms</c>, <c>attentions</c>).
/// TorchSharp registers submodules under their field names, so fields here and in every module of the U-Net are
/// named exactly as the PyTorch keys; derived classes call RegisterComponents() once their own fields are set.
/// </summary>
internal abstract class ResnetAttentionLayers : nn.Module
{
    protected readonly ModuleList<Sequential> resnet_conv_first = new();
    protected readonly ModuleList<Sequential> t_emb_layers = new();
    protected readonly ModuleList<Sequential> resnet_conv_second = new();
    protected readonly ModuleList<Conv2d> residual_input_conv = new();
    protected readonly ModuleList<GroupNorm> attention_norms = new();
    protected readonly ModuleList<SelfAttention> attentions = new();
    // The Linear inside each t_emb_layers[i] (a plain list: TorchSharp registers only Module, Parameter and Tensor
    // fields).
    private readonly List<Linear> _timeLinears = [];

    /// <param name="resnetInputs">Input channels of each resnet layer; all output
    /// <paramref name="outChannels"/>.</param>
    /// <param name="attentionLayers">How many attention layers (each over <paramref name="outChannels"/>); 0 =
    /// none.</param>
    protected ResnetAttentionLayers(string name, IEnumerable<long> resnetInputs, long outChannels, int attentionLayers,
        int timeEmbDim, int heads) : base(name)
    {
        foreach (var inChannels in resnetInputs)
        {
            resnet_conv_first.Add(Layers.NormActConv(inChannels, outChannels));
            var linear = nn.Linear(timeEmbDim, outChannels);
            _timeLinears.Add(linear);
            t_emb_layers.Add(nn.Sequential(nn.SiLU(), linear));
            resnet_conv_second.Add(Layers.NormActConv(outChannels, outChannels));
            residual_input_conv.Add(nn.Conv2d(inChannels, outChannels, 1));
        }
        for (int i = 0; i < attentionLayers; i++)
        {
            attention_norms.Add(Layers.GroupNorm(outChannels));
            attentions.Add(new SelfAttention(outChannels, heads));
        }
    }

    /// <summary>The Linear of each resnet layer's time projection SiLU → Linear, in layer order (the U-Net batches
    /// them).</summary>
    internal IReadOnlyList<Linear> TimeLinears => _timeLinears;

    /// <summary>Each resnet layer's own time projection SiLU → Linear (the reference's per-layer path).</summary>
    internal IList<Sequential> TimeProjectionLayers => t_emb_layers;

    /// <summary>Whether this block has self-attention layers (<c>model_params.attention_levels</c>).</summary>
    protected bool HasAttention => attentions.Count > 0;

    /// <summary>
    /// Resnet layer i: conv2(GN-SiLU-conv1(x) + p) + 1×1 conv(x), where <paramref name="timeProjection"/> p =
    /// W·SiLU(t_emb) [B, C] is this layer's projection of the time embedding (computed for all layers at once by the
    /// U-Net).
    /// </summary>
    protected Tensor Resnet(int i, Tensor x, Tensor timeProjection)
    {
        using var scope = NewDisposeScope();
        var h = resnet_conv_first[i].forward(x);
        h = h + timeProjection.unsqueeze(-1).unsqueeze(-1);
        h = resnet_conv_second[i].forward(h);
        return (h + residual_input_conv[i].forward(x)).MoveToOuterDisposeScope();
    }

    /// <summary>Down and up blocks' layer i: resnet, then attention when this block has it.</summary>
    protected Tensor ResnetThenAttention(int i, Tensor x, Tensor timeProjection)
    {
        var h = Resnet(i, x, timeProjection);
        return HasAttention ? Attention(i, h) : h;
    }

    /// <summary>Attention layer i: x + Attn(GN(x)) over the H·W positions.</summary>
    protected Tensor Attention(int i, Tensor x)
    {
        long b = x.shape[0], c = x.shape[1], h = x.shape[2], w = x.shape[3];
        using var scope = NewDisposeScope();
        var seq = attention_norms[i].forward(x.reshape(b, c, h * w)).transpose(1, 2); // [B, HW, C]
        var attended = attentions[i].forward(seq).transpose(1, 2).reshape(b, c, h, w);
        return (x + attended).MoveToOuterDisposeScope();
    }
}
