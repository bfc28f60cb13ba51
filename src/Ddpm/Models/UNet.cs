using Ddpm.Configuration;
using Ddpm.Runtime;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Models;

/// <summary>
/// The seed's U-Net ε_θ(x_t, t) (explainingai-code/DDPM-Pytorch <c>models/unet_base.py</c>): conv_in, a sinusoidal time
/// embedding through an MLP, down blocks, mid blocks, up blocks with skip connections, GroupNorm → SiLU → conv_out.
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
    /// <summary>Label embedding for class-conditional models (row <c>num_classes</c> is the null label ∅); null
    /// otherwise.</summary>
    private readonly Embedding? class_emb;
    // Every resnet layer's time-projection Linear, in forward order, and their output widths (see TimeProjections).
    private readonly Linear[] _timeLinears;
    private readonly long[] _timeWidths;

    public UNetOptions Options { get; }

    public UNet(UNetOptions options) : base(nameof(UNet))
    {
        TorchSharpPatch.EnsureApplied();
        options.Validate();
        Runtime.DevicePolicy.EnsureApplied();
        Options = options;
        var down = options.DownChannels;
        var mid = options.MidChannels;
        int temb = options.TimeEmbDim;

        t_proj = nn.Sequential(nn.Linear(temb, temb), nn.SiLU(), nn.Linear(temb, temb));
        conv_in = nn.Conv2d(options.ImChannels, down[0], 3, padding: 1);
        for (int i = 0; i < down.Count - 1; i++)
            downs.Add(new DownBlock(down[i], down[i + 1], temb, options.DownSample[i], options.NumHeads, options.NumDownLayers,
                options.HasAttention(i)));
        for (int i = 0; i < mid.Count - 1; i++)
            mids.Add(new MidBlock(mid[i], mid[i + 1], temb, options.NumHeads, options.NumMidLayers));
        for (int i = down.Count - 2; i >= 0; i--)
            ups.Add(new UpBlock(down[i] * 2, i != 0 ? down[i - 1] : UNetOptions.OutChannels, temb,
                options.DownSample[i], options.NumHeads, options.NumUpLayers, options.HasAttention(i)));
        norm_out = Layers.GroupNorm(UNetOptions.OutChannels);
        conv_out = nn.Conv2d(UNetOptions.OutChannels, options.ImChannels, 3, padding: 1);
        if (options.NumClasses > 0) class_emb = nn.Embedding(options.NumClasses + 1, temb);
        RegisterComponents();
        _timeLinears = Blocks.SelectMany(b => b.TimeLinears).ToArray();
        _timeWidths = _timeLinears.Select(l => l.weight!.shape[0]).ToArray();
    }

    /// <summary>The down, mid and up blocks in the order forward runs them.</summary>
    internal IEnumerable<ResnetAttentionLayers> Blocks => downs.Cast<ResnetAttentionLayers>().Concat(mids).Concat(ups);

    /// <summary>Whether the model takes class labels (<c>num_classes</c> &gt; 0).</summary>
    public bool IsConditional => class_emb is not null;

    /// <summary>The null label ∅ of a class-conditional model (= num_classes).</summary>
    public long NullLabel => Options.NumClasses;

    /// <summary>ε_θ(x_t, t). <paramref name="x"/>: [B, C, H, W]; <paramref name="t"/>: int64 [B] (or [1], broadcast).
    /// A class-conditional model is given the null label.</summary>
    public override Tensor forward(Tensor x, Tensor t) => forward(x, t, null);

    /// <summary>
    /// ε_θ(x_t, t, y): the label embedding is added to the time embedding (as in classifier-free guidance,
    /// Ho &amp; Salimans 2022). <paramref name="y"/>: int64 [B] in 0..num_classes (num_classes = ∅), or null for ∅.
    /// </summary>
    public Tensor forward(Tensor x, Tensor t, Tensor? y)
    {
        if (y is not null && class_emb is null)
            throw new ArgumentException("this U-Net is unconditional (num_classes = 0) and takes no labels");
        using var scope = NewDisposeScope();
        // A model converted to bf16 (or another float type) takes and returns float32 like any other: cast in and out.
        var dtype = conv_in.weight!.dtype;
        if (x.dtype != dtype) return forward(x.to(dtype), t, y).to(x.dtype).MoveToOuterDisposeScope();
        var tEmb = t_proj.forward(TimeEmbedding.Sinusoidal(t, Options.TimeEmbDim).to(dtype));
        if (class_emb is not null)
            tEmb = tEmb + class_emb.forward(y ?? full(x.shape[0], NullLabel, dtype: int64, device: x.device));
        var projections = TimeProjections(tEmb);
        int next = 0;
        ArraySegment<Tensor> Take(ResnetAttentionLayers block)
        {
            var mine = new ArraySegment<Tensor>(projections, next, block.TimeLinears.Count);
            next += mine.Count;
            return mine;
        }
        var h = conv_in.forward(x);
        var skips = new Stack<Tensor>();
        foreach (var down in downs)
        {
            skips.Push(h);
            h = down.forward(h, Take(down));
        }
        foreach (var mid in mids) h = mid.forward(h, Take(mid));
        foreach (var up in ups) h = up.forward(h, skips.Pop(), Take(up));
        h = nn.functional.silu(norm_out.forward(h));
        return conv_out.forward(h).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// W_k·SiLU(t_emb) + b_k for every resnet layer k (the reference's per-layer <c>t_emb_layers</c>), as one SiLU and
    /// one matrix product over the layers' weights stacked, then split: [B, C_k] each, in <see cref="Blocks"/> order.
    /// The weights stay the layers' own parameters (same state_dict keys); the stacking is differentiable.
    /// </summary>
    internal Tensor[] TimeProjections(Tensor tEmb)
    {
        var weight = cat(_timeLinears.Select(l => l.weight!).ToArray(), 0);
        var bias = cat(_timeLinears.Select(l => l.bias!).ToArray(), 0);
        return nn.functional.linear(nn.functional.silu(tEmb), weight, bias).split(_timeWidths, 1);
    }

    /// <summary>Number of trainable parameters.</summary>
    public long ParameterCount() => parameters().Sum(p => p.numel());
}
