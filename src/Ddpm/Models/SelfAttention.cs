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
        var attended = nn.functional.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2]);
        var merged = attended.transpose(1, 2).reshape(b, l, c);
        return out_proj.forward(merged).MoveToOuterDisposeScope();
    }
}
