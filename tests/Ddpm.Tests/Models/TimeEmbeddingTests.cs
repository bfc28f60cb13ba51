using Ddpm.Models;
using static TorchSharp.torch;

namespace Ddpm.Tests.Models;

public class TimeEmbeddingTests
{
    [Fact]
    public void Embedding_is_half_sines_then_half_cosines_of_t_over_10000_powers()
    {
        using var scope = NewDisposeScope();
        const int dim = 8;
        long[] ts = [0, 1, 7, 50, 999];
        var emb = TimeEmbedding.Sinusoidal(tensor(ts), dim);
        Assert.Equal(new long[] { ts.Length, dim }, emb.shape);
        Assert.Equal(ScalarType.Float32, emb.dtype);
        var values = emb.data<float>().ToArray();
        for (int b = 0; b < ts.Length; b++)
            for (int i = 0; i < dim / 2; i++)
            {
                double arg = ts[b] / Math.Pow(10000, (double)i / (dim / 2));
                // float32 arithmetic: the argument carries a relative error of a few ulps (≈ 6e-8 each).
                double tol = 1e-6 + 3e-7 * ts[b];
                Assert.True(Math.Abs(values[b * dim + i] - Math.Sin(arg)) <= tol, $"sin at t={ts[b]}, i={i}: {values[b * dim + i]} vs {Math.Sin(arg)}");
                Assert.True(Math.Abs(values[b * dim + dim / 2 + i] - Math.Cos(arg)) <= tol, $"cos at t={ts[b]}, i={i}: {values[b * dim + dim / 2 + i]} vs {Math.Cos(arg)}");
            }
        // Hand-checked entries: t = 7, i = 1 → sin(7 / 10000^(1/4)) = sin(0.7); t = 1, i = 0 → cos(1).
        Assert.Equal(Math.Sin(0.7), values[2 * dim + 1], 6);
        Assert.Equal(Math.Cos(1.0), values[1 * dim + dim / 2], 6);
        Assert.Equal(0f, values[0]);
        Assert.Equal(1f, values[dim / 2]);
    }

    [Fact]
    public void Embedding_has_shape_batch_by_dim_for_the_default_dim()
    {
        using var scope = NewDisposeScope();
        var emb = TimeEmbedding.Sinusoidal(tensor(new long[] { 3, 4, 5 }), 128);
        Assert.Equal(new long[] { 3, 128 }, emb.shape);
    }

    [Fact]
    public void An_odd_dimension_is_rejected()
    {
        using var scope = NewDisposeScope();
        Assert.Throws<ArgumentException>(() => TimeEmbedding.Sinusoidal(tensor(new long[] { 1 }), 7));
    }
}
