using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Models;

/// <summary>
/// Multi-head self-attention over a sequence [B, L, C], batch first, with PyTorch nn.MultiheadAttention's parameters
/// (<c>in_proj_weight</c> [3C, C], <c>in_proj_bias</c> [3C], <c>out_proj</c>) so reference weights load unchanged.
/// Computed with scaled_dot_product_attention instead of TorchSharp's MultiheadAttention, which takes (L, N, E)
/// only, materialises the (B·heads, L, L) matrix and compares query with key on every call.
/// </summary>
internal sealed class SelfAttention : nn.Module<Tensor, Tensor>
{
    private readonly Parameter in_proj_weight;
    private readonly Parameter in_proj_bias;
    private readonly Linear out_proj;
    private readonly int _heads;

    public SelfAttention(long channels, int heads) : base(nameof(SelfAttention))
    {
        if (channels % heads != 0) throw new ArgumentException($"{heads} heads do not divide {channels} channels");
        _heads = heads;
        in_proj_weight = new Parameter(empty(3 * channels, channels));
        in_proj_bias = new Parameter(zeros(3 * channels));
        out_proj = nn.Linear(channels, channels);
        using (no_grad())
        {
            // PyTorch's MultiheadAttention._reset_parameters.
            nn.init.xavier_uniform_(in_proj_weight);
            nn.init.zeros_(out_proj.bias!);
        }
        RegisterComponents();
    }

    /// <summary>softmax(QKᵀ/√d)V per head, then the output projection. <paramref name="x"/>: [B, L, C].</summary>
    public override Tensor forward(Tensor x)
    {
        long b = x.shape[0], l = x.shape[1], c = x.shape[2];
        using var scope = NewDisposeScope();
        var qkv = nn.functional.linear(x, in_proj_weight, in_proj_bias)
            .view(b, l, 3, _heads, c / _heads)
            .permute(2, 0, 3, 1, 4); // [3, B, heads, L, d]
        var attended = Attend(qkv[0], qkv[1], qkv[2], PadsHeads(x));
        var merged = attended.transpose(1, 2).reshape(b, l, c);
        return out_proj.forward(merged).MoveToOuterDisposeScope();
    }

    /// <summary>PyTorch's bf16/fp16 flash and memory-efficient attention kernels take head sizes that are multiples of
    /// this.</summary>
    internal const long HeadAlignment = 8;

    /// <summary>The variable that turns head padding off (0) for bf16/fp16 on CUDA.</summary>
    internal const string HeadPaddingVariable = "DDPM_ATTENTION_PAD";

    private static bool? _headPadding;

    /// <summary>
    /// Whether <see cref="Attend"/> pads heads for <paramref name="x"/>: bf16 or fp16 on CUDA (where a head size such
    /// as the seed's last up block's 16 channels / 4 heads = 4 would send PyTorch to its slow math kernel), unless
    /// <c>DDPM_ATTENTION_PAD=0</c>. float32 keeps its kernels, so it is never padded.
    /// </summary>
    internal static bool PadsHeads(Tensor x) =>
        x.device_type == DeviceType.CUDA && x.dtype is ScalarType.BFloat16 or ScalarType.Float16
        && (_headPadding ??= Runtime.DevicePolicy.Flag(HeadPaddingVariable) ?? true);

    /// <summary>
    /// softmax(QKᵀ/√d)V per head (Vaswani et al. 2017, eq. 1); q, k, v: [B, heads, L, d]. With <paramref name="pad"/>
    /// and d not a multiple of <see cref="HeadAlignment"/>, q, k and v are zero-padded to d′ and q is scaled by
    /// √(d′/d), so the kernel's 1/√d′ gives (√(d′/d)·q)·k/√d′ = q·k/√d, and v's zero columns give output columns that
    /// are dropped: the same function, on the fast kernels.
    /// </summary>
    internal static Tensor Attend(Tensor q, Tensor k, Tensor v, bool pad)
    {
        long d = q.shape[^1];
        long padded = (d + HeadAlignment - 1) / HeadAlignment * HeadAlignment;
        if (!pad || padded == d) return nn.functional.scaled_dot_product_attention(q, k, v);
        using var scope = NewDisposeScope();
        var widen = new long[] { 0, padded - d };
        var attended = nn.functional.scaled_dot_product_attention(
            nn.functional.pad(q * Math.Sqrt((double)padded / d), widen), nn.functional.pad(k, widen), nn.functional.pad(v, widen));
        return attended.narrow(-1, 0, d).MoveToOuterDisposeScope();
    }
}
