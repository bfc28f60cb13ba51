using Ddpm.Configuration;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Models;

/// <summary>
/// The seed's U-Net ε_θ(x_t, t) (explainingai-code/DDPM-Pytorch <c>models/unet_base.py</c>): conv_in, a sinusoidal
/// time embedding through an MLP, down blocks, mid blocks, up blocks with skip connections, GroupNorm → SiLU → conv_out.
/// Parameter names equal the reference's state_dict keys.
/// </summary>
public sealed class UNet : nn.Module<Tensor, Tensor, Tensor>
{
    private readonly Sequential t_proj;
    private readonly Conv2d conv_in;
    private readonly ModuleList<DownBlock> downs = new();
    private readonly ModuleList<MidBlock> mids = new();
    private readonly ModuleList<UpBlock> ups = new();
    private readonly GroupNorm norm_out;
    private readonly Conv2d conv_out;

    public UNetOptions Options { get; }

    public UNet(UNetOptions options) : base(nameof(UNet))
    {
        options.Validate();
        Options = options;
        var down = options.DownChannels;
        var mid = options.MidChannels;
        int temb = options.TimeEmbDim;

        t_proj = nn.Sequential(nn.Linear(temb, temb), nn.SiLU(), nn.Linear(temb, temb));
        conv_in = nn.Conv2d(options.ImChannels, down[0], 3, padding: 1);
        for (int i = 0; i < down.Count - 1; i++)
            downs.Add(new DownBlock(down[i], down[i + 1], temb, options.DownSample[i], options.NumHeads, options.NumDownLayers));
        for (int i = 0; i < mid.Count - 1; i++)
            mids.Add(new MidBlock(mid[i], mid[i + 1], temb, options.NumHeads, options.NumMidLayers));
        for (int i = down.Count - 2; i >= 0; i--)
            ups.Add(new UpBlock(down[i] * 2, i != 0 ? down[i - 1] : UNetOptions.OutChannels, temb,
                options.DownSample[i], options.NumHeads, options.NumUpLayers));
        norm_out = Layers.GroupNorm(UNetOptions.OutChannels);
        conv_out = nn.Conv2d(UNetOptions.OutChannels, options.ImChannels, 3, padding: 1);
        RegisterComponents();

    }

    /// <summary>ε_θ(x_t, t). <paramref name="x"/>: [B, C, H, W]; <paramref name="t"/>: int64 [B] (or [1], broadcast).</summary>
    public override Tensor forward(Tensor x, Tensor t)
    {
        using var scope = NewDisposeScope();
        var tEmb = t_proj.forward(TimeEmbedding.Sinusoidal(t, Options.TimeEmbDim));
        var h = conv_in.forward(x);
        var skips = new Stack<Tensor>();
        foreach (var down in downs)
        {
            skips.Push(h);
            h = down.forward(h, tEmb);
        }
        foreach (var mid in mids) h = mid.forward(h, tEmb);
        foreach (var up in ups) h = up.forward(h, skips.Pop(), tEmb);
        h = nn.functional.silu(norm_out.forward(h));
        return conv_out.forward(h).MoveToOuterDisposeScope();
    }

    /// <summary>Number of trainable parameters.</summary>
    public long ParameterCount() => parameters().Sum(p => p.numel());
}
