using Ddpm.Onnx.Sampling;

namespace Ddpm.Tests.Onnx;

public sealed class SeededNoiseTests
{
    [Fact]
    public void An_image_gets_the_same_noise_in_any_batch_and_different_images_and_draws_differ()
    {
        var noise = new SeededNoise(42);
        var alone = new float[10];
        noise.Initial(5, 1, alone);
        var batch = new float[30];
        noise.Initial(4, 3, batch);
        Assert.Equal(alone, batch[10..20]);
        Assert.NotEqual(batch[0..10], batch[10..20]);
        var step = new float[10];
        noise.Step(5, 1, 0, step);
        Assert.NotEqual(alone, step);
        var other = new float[10];
        new SeededNoise(43).Initial(5, 1, other);
        Assert.NotEqual(alone, other);
    }

    [Fact]
    public void The_draws_are_standard_normal()
    {
        var z = new float[200_000];
        new SeededNoise(1).Step(0, 1, 3, z);
        double mean = z.Average(v => (double)v), variance = z.Average(v => ((double)v - mean) * ((double)v - mean));
        double tail = z.Count(v => Math.Abs(v) > 1.96) / (double)z.Length;
        Assert.InRange(mean, -0.01, 0.01);          // 4.5 standard errors
        Assert.InRange(variance, 0.985, 1.015);     // about 4.7 standard errors
        Assert.InRange(tail, 0.047, 0.053);          // P(|z| > 1.96) = 0.05
    }
}
