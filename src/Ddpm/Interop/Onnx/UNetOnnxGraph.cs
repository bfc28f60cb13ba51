using Ddpm.Configuration;
using Ddpm.Interop.Onnx.Proto;
using Ddpm.Models;
using static TorchSharp.torch;
using DataType = Ddpm.Interop.Onnx.Proto.TensorProto.Types.DataType;

namespace Ddpm.Interop.Onnx;

/// <summary>
/// The U-Net's forward pass (<see cref="UNet.forward(Tensor, Tensor, Tensor?)"/>) as an ONNX graph, layer by layer,
/// with the weights as initializers named by their state_dict keys. Spatial sizes are known from the options, so every
/// reshape has a constant shape (0 = keep the batch). GroupNorm is Reshape → InstanceNormalization → Reshape →
/// per-channel affine, which every opset and runtime computes the same way (opset 18's GroupNormalization took
/// per-group scale and bias until opset 21).
/// </summary>
internal sealed class UNetOnnxGraph
{
    private const string Batch = "batch";
    private const float GroupNormEpsilon = 1e-5f; // TorchSharp's and PyTorch's nn.GroupNorm default
    private readonly OnnxGraphBuilder _g;
    private readonly IReadOnlyDictionary<string, Tensor> _w;
    private readonly UNetOptions _o;
    private readonly Dictionary<string, string> _initializers = [];
    private string _siluTimeEmbedding = "";

    private UNetOnnxGraph(OnnxGraphBuilder g, IReadOnlyDictionary<string, Tensor> weights, UNetOptions options) =>
        (_g, _w, _o) = (g, weights, options);

    /// <summary>
    /// Writes the graph of <paramref name="options"/>'s U-Net with <paramref name="weights"/> (float32 CPU state_dict)
    /// into
    /// <paramref name="g"/>: inputs x [batch, C, H, W] float32, t [batch] int64 and, for a class-conditional model,
    /// labels [batch] int64 (num_classes = the null label ∅); output <see cref="OnnxExport.OutputName"/>, the raw
    /// prediction.
    /// </summary>
    public static void Build(OnnxGraphBuilder g, IReadOnlyDictionary<string, Tensor> weights, UNetOptions options)
    {
        var graph = new UNetOnnxGraph(g, weights, options);
        graph.Forward();
    }

    private void Forward()
    {
        long c = _o.ImChannels, size = _o.ImSize;
        var x = _g.Input(OnnxExport.InputName, DataType.Float, Batch, c, size, size);
        var t = _g.Input(OnnxExport.TimestepName, DataType.Int64, Batch);
        var labels = _o.NumClasses > 0 ? _g.Input(OnnxExport.LabelsName, DataType.Int64, Batch) : null;

        var tEmb = Gemm(Silu(Gemm(TimeEmbedding(t), "t_proj.0")), "t_proj.2");
        if (labels is not null)
            tEmb = _g.Node("Add", [tEmb, _g.Node("Gather", [Weight("class_emb.weight"), labels], "class_emb", OnnxGraphBuilder.Int("axis", 0))], "t_emb");
        _siluTimeEmbedding = Silu(tEmb);

        long hw = size;
        var h = Conv(x, "conv_in", 1, 1);
        var skips = new Stack<(string Value, long Size)>();
        int levels = _o.DownChannels.Count - 1;
        for (int i = 0; i < levels; i++)
        {
            skips.Push((h, hw));
            var block = $"downs.{i}";
            for (int j = 0; j < _o.NumDownLayers; j++)
            {
                h = Resnet(block, j, h, hw);
                if (_o.HasAttention(i)) h = Attention(block, j, h, hw);
            }
            if (_o.DownSample[i])
            {
                h = Conv(h, $"{block}.down_sample_conv", 2, 1);
                hw = (hw + 2 - 4) / 2 + 1;
            }
        }
        for (int i = 0; i < _o.MidChannels.Count - 1; i++)
        {
            var block = $"mids.{i}";
            h = Resnet(block, 0, h, hw);
            for (int j = 0; j < _o.NumMidLayers; j++) h = Resnet(block, j + 1, Attention(block, j, h, hw), hw);
        }
        for (int u = 0; u < levels; u++)
        {
            int level = levels - 1 - u;
            var block = $"ups.{u}";
            if (_o.DownSample[level])
            {
                h = ConvTranspose(h, $"{block}.up_sample_conv");
                hw = (hw - 1) * 2 - 2 + 4;
            }
            var (skip, skipSize) = skips.Pop();
            if (skipSize != hw)
                throw new InvalidOperationException($"up block {u} meets a {skipSize}×{skipSize} skip at {hw}×{hw} (image size {size})");
            h = _g.Node("Concat", [h, skip], $"{block}.cat", OnnxGraphBuilder.Int("axis", 1));
            for (int j = 0; j < _o.NumUpLayers; j++)
            {
                h = Resnet(block, j, h, hw);
                if (_o.HasAttention(level)) h = Attention(block, j, h, hw);
            }
        }
        h = Silu(GroupNorm(h, "norm_out", hw));
        var output = Conv(h, "conv_out", 1, 1, OnnxExport.OutputName);
        _g.Output(output, DataType.Float, Batch, c, size, size);
    }

    /// <summary>[sin(t/f_i), cos(t/f_i)], f_i = 10000^(i/(d/2)) in float32 as <see cref="Models.TimeEmbedding"/>
    /// computes it.</summary>
    private string TimeEmbedding(string t)
    {
        int half = _o.TimeEmbDim / 2;
        float[] factor;
        using (var f = pow(10000.0f, arange(0, half, dtype: float32) / half)) factor = f.data<float>().ToArray();
        var tf = _g.Node("Cast", [t], "t_float", OnnxGraphBuilder.Int("to", (long)DataType.Float));
        var arg = _g.Node("Div", [_g.Node("Unsqueeze", [tf, _g.Int64Vector(1)], "t_column"), _g.Floats("time_factor", factor, 1, half)], "t_arg");
        return _g.Node("Concat", [_g.Node("Sin", [arg], "t_sin"), _g.Node("Cos", [arg], "t_cos")], "t_sinusoidal",
            OnnxGraphBuilder.Int("axis", 1));
    }

    /// <summary>Resnet layer j of <paramref name="block"/>: conv2(GN-SiLU(conv1(GN-SiLU(x)) + p)) + 1×1
    /// conv(x).</summary>
    private string Resnet(string block, int j, string x, long hw)
    {
        var first = $"{block}.resnet_conv_first.{j}";
        var second = $"{block}.resnet_conv_second.{j}";
        var h = Conv(Silu(GroupNorm(x, $"{first}.0", hw)), $"{first}.2", 1, 1);
        // W·SiLU(t_emb) + b as [B, C, 1, 1] (the U-Net batches these; one Gemm each computes the same).
        var projection = _g.Node("Unsqueeze", [Gemm(_siluTimeEmbedding, $"{block}.t_emb_layers.{j}.1"), _g.Int64Vector(2, 3)], $"{block}.t_emb.{j}");
        h = _g.Node("Add", [h, projection], $"{first}.plus_t");
        h = Conv(Silu(GroupNorm(h, $"{second}.0", hw)), $"{second}.2", 1, 1);
        return _g.Node("Add", [h, Conv(x, $"{block}.residual_input_conv.{j}", 1, 0)], $"{block}.resnet.{j}");
    }

    /// <summary>Attention layer j of <paramref name="block"/>: x + out_proj(softmax(QKᵀ/√d)V) over the H·W positions of
    /// GN(x).</summary>
    private string Attention(string block, int j, string x, long hw)
    {
        var prefix = $"{block}.attentions.{j}";
        var inProj = _w[$"{prefix}.in_proj_weight"];
        var inBias = _w[$"{prefix}.in_proj_bias"];
        long c = inProj.shape[1];
        int heads = _o.NumHeads;
        long d = c / heads;
        var seq = _g.Node("Transpose", [_g.Node("Reshape", [GroupNorm(x, $"{block}.attention_norms.{j}", hw), _g.Int64Vector(0, c, -1)],
            $"{prefix}.flat")], $"{prefix}.seq", OnnxGraphBuilder.Ints("perm", 0, 2, 1)); // [B, L, C]
        // Q, K and V from the rows of in_proj_weight; 1/√d is folded into Q's weight and bias.
        float scale = (float)(1 / Math.Sqrt(d));
        string Project(int part, string name, float factor, long[] perm)
        {
            float[] weightT, bias;
            using (var wPart = inProj.narrow(0, part * c, c)) using (var wt = (wPart * factor).t().contiguous()) weightT = wt.data<float>().ToArray();
            using (var bPart = inBias.narrow(0, part * c, c)) using (var bs = bPart * factor) bias = bs.data<float>().ToArray();
            var projected = _g.Node("Add", [_g.Node("MatMul", [seq, _g.Floats($"{prefix}.{name}_weight_t", weightT, c, c)], $"{prefix}.{name}_mm"),
                _g.Floats($"{prefix}.{name}_bias", bias, c)], $"{prefix}.{name}");
            var split = _g.Node("Reshape", [projected, _g.Int64Vector(0, 0, heads, d)], $"{prefix}.{name}_heads");
            return _g.Node("Transpose", [split], $"{prefix}.{name}_t", OnnxGraphBuilder.Ints("perm", perm));
        }
        var q = Project(0, "q", scale, [0, 2, 1, 3]); // [B, heads, L, d]
        var k = Project(1, "k", 1, [0, 2, 3, 1]);     // [B, heads, d, L]
        var v = Project(2, "v", 1, [0, 2, 1, 3]);     // [B, heads, L, d]
        var weights = _g.Node("Softmax", [_g.Node("MatMul", [q, k], $"{prefix}.scores")], $"{prefix}.softmax", OnnxGraphBuilder.Int("axis", -1));
        var attended = _g.Node("MatMul", [weights, v], $"{prefix}.attended");
        var merged = _g.Node("Reshape", [_g.Node("Transpose", [attended], $"{prefix}.merge_t", OnnxGraphBuilder.Ints("perm", 0, 2, 1, 3)),
            _g.Int64Vector(0, 0, c)], $"{prefix}.merged");
        var output = _g.Node("Add", [_g.Node("MatMul", [merged, WeightTransposed($"{prefix}.out_proj.weight")], $"{prefix}.out_mm"),
            Weight($"{prefix}.out_proj.bias")], $"{prefix}.out");
        var image = _g.Node("Reshape", [_g.Node("Transpose", [output], $"{prefix}.out_t", OnnxGraphBuilder.Ints("perm", 0, 2, 1)),
            _g.Int64Vector(0, c, hw, hw)], $"{prefix}.image");
        return _g.Node("Add", [x, image], $"{prefix}.residual");
    }

    /// <summary>GroupNorm(8) with the affine of <paramref name="key"/>: Reshape [B, G, −1] → InstanceNormalization →
    /// Reshape → ·γ + β.</summary>
    private string GroupNorm(string x, string key, long hw)
    {
        var gamma = _w[$"{key}.weight"];
        long c = gamma.shape[0];
        int groups = UNetOptions.Groups;
        var grouped = _g.Node("Reshape", [x, _g.Int64Vector(0, groups, -1)], $"{key}.grouped");
        var normed = _g.Node("InstanceNormalization", [grouped, Constant($"gn_ones_{groups}", Enumerable.Repeat(1f, groups).ToArray(), groups),
            Constant($"gn_zeros_{groups}", new float[groups], groups)], $"{key}.normalized", OnnxGraphBuilder.Float("epsilon", GroupNormEpsilon));
        var back = _g.Node("Reshape", [normed, _g.Int64Vector(0, c, hw, hw)], $"{key}.ungrouped");
        var scaled = _g.Node("Mul", [back, Weight($"{key}.weight", [c, 1, 1])], $"{key}.scaled");
        return _g.Node("Add", [scaled, Weight($"{key}.bias", [c, 1, 1])], key);
    }

    private string Silu(string x) => _g.Node("Mul", [x, _g.Node("Sigmoid", [x], $"{x}.sigmoid")], $"{x}.silu");

    /// <summary>Linear on [B, in]: x·Wᵀ + b (Gemm with transB).</summary>
    private string Gemm(string x, string key) =>
        _g.Node("Gemm", [x, Weight($"{key}.weight"), Weight($"{key}.bias")], key, OnnxGraphBuilder.Int("transB", 1));

    private string Conv(string x, string key, long stride, long pad, string? output = null)
    {
        var weight = _w[$"{key}.weight"];
        return _g.Node("Conv", [x, Weight($"{key}.weight"), Weight($"{key}.bias")], output ?? key,
            OnnxGraphBuilder.Ints("kernel_shape", weight.shape[2], weight.shape[3]), OnnxGraphBuilder.Ints("strides", stride, stride),
            OnnxGraphBuilder.Ints("pads", pad, pad, pad, pad));
    }

    /// <summary>The 4×4 stride-2 up-sampling (weight [C_in, C_out, k, k], as PyTorch's ConvTranspose2d).</summary>
    private string ConvTranspose(string x, string key)
    {
        var weight = _w[$"{key}.weight"];
        return _g.Node("ConvTranspose", [x, Weight($"{key}.weight"), Weight($"{key}.bias")], key,
            OnnxGraphBuilder.Ints("kernel_shape", weight.shape[2], weight.shape[3]), OnnxGraphBuilder.Ints("strides", 2, 2),
            OnnxGraphBuilder.Ints("pads", 1, 1, 1, 1));
    }

    /// <summary>The state_dict tensor <paramref name="key"/> as an initializer (optionally viewed as <paramref
    /// name="shape"/>).</summary>
    private string Weight(string key, long[]? shape = null)
    {
        var cacheKey = shape is null ? key : $"{key}[{string.Join(",", shape)}]";
        if (_initializers.TryGetValue(cacheKey, out var name)) return name;
        var tensor = _w.TryGetValue(key, out var found) ? found : throw new InvalidOperationException($"the U-Net has no weight '{key}'");
        name = _g.Floats(key, tensor.data<float>().ToArray(), shape ?? tensor.shape);
        _initializers[cacheKey] = name;
        return name;
    }

    /// <summary>A 2-D weight transposed, for MatMul on [B, L, in].</summary>
    private string WeightTransposed(string key)
    {
        var cacheKey = key + ".T";
        if (_initializers.TryGetValue(cacheKey, out var name)) return name;
        using var t = _w[key].t().contiguous();
        name = _g.Floats(cacheKey, t.data<float>().ToArray(), t.shape);
        _initializers[cacheKey] = name;
        return name;
    }

    private string Constant(string key, float[] values, params long[] dims)
    {
        if (!_initializers.TryGetValue(key, out var name)) _initializers[key] = name = _g.Floats(key, values, dims);
        return name;
    }
}
