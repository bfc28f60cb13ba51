using SkiaSharp;

namespace Ddpm.Tests.Cli;

/// <summary><c>ddpm sample</c> through the generation pipeline: batch size, seeds per image, bad requests.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class SampleCliTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("sample-cli");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static byte[] Row(SKBitmap grid, int y) => Enumerable.Range(0, grid.Width).Select(x => grid.GetPixel(x, y).Red).ToArray();

    [Fact]
    public void A_seed_gives_the_same_images_whatever_the_batch_size_and_the_number_of_images()
    {
        var config = Path.Combine(_dir, "tiny.yaml");
        File.WriteAllText(config, TinyCli.Yaml(imSize: 8));
        var run = Path.Combine(_dir, "run");
        Assert.Equal(0, TinyCli.Run("train", "--config", config, "--out", run, "--max-steps", "2", "--device", "cpu"));
        var ckpt = Path.Combine(run, "checkpoint.ckpt");
        string Sample(string name, string seed, params string[] extra)
        {
            var dir = Path.Combine(_dir, name);
            Assert.Equal(0, TinyCli.Run(["sample", "--checkpoint", ckpt, "--grid-rows", "2", "--frames", "0", "--seed", seed, "--out", dir, "--device", "cpu", .. extra]));
            return Path.Combine(dir, "samples.png");
        }
        // Four images in batches of two: the first batch is exactly the request for two images.
        using var four = SKBitmap.Decode(Sample("four", "9", "--num", "4", "--batch-size", "2"));
        using var two = SKBitmap.Decode(Sample("two", "9", "--num", "2"));
        using var otherSeed = SKBitmap.Decode(Sample("other", "10", "--num", "2"));
        Assert.Equal((22, 22), (four.Width, four.Height)); // 2 × (8 + 2 padding) + 2
        Assert.Equal((22, 12), (two.Width, two.Height));
        for (int y = 0; y < two.Height; y++) Assert.Equal(Row(two, y), Row(four, y));
        Assert.Contains(Enumerable.Range(0, two.Height), y => !Row(two, y).SequenceEqual(Row(otherSeed, y)));
        Assert.Equal(2, TinyCli.Run("sample", "--checkpoint", ckpt, "--out", Path.Combine(_dir, "bad"), "--batch-size", "0", "--device", "cpu"));
        Assert.False(Directory.Exists(Path.Combine(_dir, "bad")));
    }

    [Fact]
    public void Without_sampler_options_sample_runs_DPM_Solver_2M_SDE_in_20_Karras_steps_and_ddpm_is_one_flag_away()
    {
        var config = Path.Combine(_dir, "tiny.yaml");
        File.WriteAllText(config, TinyCli.Yaml(imSize: 8, timesteps: 40));
        var run = Path.Combine(_dir, "run");
        Assert.Equal(0, TinyCli.Run("train", "--config", config, "--out", run, "--max-steps", "2", "--device", "cpu"));
        var ckpt = Path.Combine(run, "checkpoint.ckpt");
        byte[] Sample(string name, params string[] extra)
        {
            var dir = Path.Combine(_dir, name);
            Assert.Equal(0, TinyCli.Run(["sample", "--checkpoint", ckpt, "--num", "4", "--frames", "0", "--seed", "5", "--out", dir, "--device", "cpu", .. extra]));
            return File.ReadAllBytes(Path.Combine(dir, "samples.png"));
        }
        var byDefault = Sample("default");
        Assert.Equal(Sample("sde-20", "--sampler", "dpmpp-2m-sde", "--steps", "20", "--spacing", "karras"), byDefault);
        Assert.NotEqual(Sample("sde-19", "--sampler", "dpmpp-2m-sde", "--steps", "19"), byDefault);
        Assert.NotEqual(Sample("ddpm", "--sampler", "ddpm"), byDefault);
        Assert.Equal(Sample("ddpm-all", "--sampler", "ddpm", "--steps", "40"), Sample("ddpm-again", "--sampler", "ddpm"));
    }
}
