using Ddpm.Cli;
using Ddpm.Configuration;
using Ddpm.Training;
using SkiaSharp;

namespace Ddpm.Tests.Cli;

/// <summary>In-process smoke tests of the ddpm CLI. Console output is not asserted; the collection runs
/// alone.</summary>
[Collection(GlobalRngCollection.Name)]
public class CliTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("cli");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static readonly string TinyYaml = TinyCli.Yaml(imSize: 16, numEpochs: 1, taskName: "cli");

    private string WriteConfig(string text, string name = "tiny.yaml")
    {
        var path = Path.Combine(_dir, name);
        File.WriteAllText(path, text);
        return path;
    }

    private static int Run(params string[] args) => TinyCli.Run(args);

    [Fact]
    public void Train_then_sample_writes_a_checkpoint_a_log_and_a_decodable_grid()
    {
        var config = WriteConfig(TinyYaml);
        var run = Path.Combine(_dir, "run");
        Assert.Equal(0, Run("train", "--config", config, "--out", run, "--max-steps", "5", "--device", "cpu"));
        var ckpt = Path.Combine(run, "checkpoint.ckpt");
        Assert.True(File.Exists(ckpt), "no checkpoint.ckpt");
        var log = File.ReadAllLines(Path.Combine(run, "train_log.csv"));
        Assert.StartsWith("epoch,step,mean_loss", log[0]);
        Assert.Equal(2, log.Length);
        Assert.Equal("1", log[1].Split(',')[0]);
        Assert.Equal("5", log[1].Split(',')[1]);
        var manifest = Checkpoint.ReadManifest(ckpt);
        Assert.Equal(5, manifest.Step);
        Assert.Equal(20, DdpmConfig.Parse(manifest.ConfigYaml).Diffusion.NumTimesteps);

        var samples = Path.Combine(_dir, "samples");
        Assert.Equal(0, Run("sample", "--checkpoint", ckpt, "--num", "4", "--grid-rows", "2", "--out", samples, "--frames", "5", "--device", "cpu"));
        using var grid = SKBitmap.Decode(Path.Combine(samples, "samples.png"));
        Assert.NotNull(grid);
        Assert.Equal(2 * (16 + 2) + 2, grid.Width);
        Assert.Equal(2 * (16 + 2) + 2, grid.Height);
        using var animation = SKBitmap.Decode(Path.Combine(samples, "reverse.png"));
        Assert.NotNull(animation);
        Assert.Equal(38, animation.Width);
        // Guidance needs a class-conditional model.
        Assert.Equal(2, Run("sample", "--checkpoint", ckpt, "--out", Path.Combine(_dir, "guided"), "--guidance", "1", "--device", "cpu"));
        Assert.False(Directory.Exists(Path.Combine(_dir, "guided")));
    }

    [Fact]
    public void Info_with_a_valid_config_succeeds()
    {
        Assert.Equal(0, Run("info", "--config", WriteConfig(TinyYaml)));
    }

    [Fact]
    public void A_missing_required_option_is_a_usage_error()
    {
        Assert.Equal(2, Run("train"));
        Assert.Equal(2, Run("info"));
        Assert.Equal(2, Run("sample"));
    }

    [Fact]
    public void A_nonexistent_checkpoint_is_a_failure()
    {
        Assert.Equal(1, Run("sample", "--checkpoint", Path.Combine(_dir, "missing.ckpt"), "--out", Path.Combine(_dir, "s"), "--device", "cpu"));
    }

    [Fact]
    public void An_invalid_config_is_a_failure()
    {
        var bad = WriteConfig(TinyYaml.Replace("num_heads: 4", "num_heads: 3"), "bad.yaml");
        Assert.Equal(1, Run("info", "--config", bad));
        Assert.Equal(1, Run("train", "--config", bad, "--out", Path.Combine(_dir, "bad"), "--max-steps", "1", "--device", "cpu"));
    }

    [Fact]
    public void A_missing_config_file_is_a_failure()
    {
        Assert.Equal(1, Run("info", "--config", Path.Combine(_dir, "nope.yaml")));
    }

    [Fact]
    public void Sampler_options_are_checked_and_ddim_respaced_ddpm_and_the_solvers_run()
    {
        var config = WriteConfig(TinyYaml);
        var run = Path.Combine(_dir, "run5");
        Assert.Equal(0, Run("train", "--config", config, "--out", run, "--max-steps", "2", "--device", "cpu"));
        var ckpt = Path.Combine(run, "checkpoint.ckpt");
        string Out(string name) => Path.Combine(_dir, name);
        Assert.Equal(0, Run("sample", "--checkpoint", ckpt, "--num", "2", "--out", Out("ddim"), "--sampler", "ddim", "--steps", "5", "--frames", "0", "--device", "cpu"));
        Assert.True(File.Exists(Path.Combine(Out("ddim"), "samples.png")));
        Assert.Equal(0, Run("sample", "--checkpoint", ckpt, "--num", "2", "--out", Out("resp"), "--steps", "4", "--frames", "0", "--device", "cpu"));
        Assert.Equal(2, Run("sample", "--checkpoint", ckpt, "--out", Out("x1"), "--steps", "0", "--device", "cpu"));
        Assert.Equal(2, Run("sample", "--checkpoint", ckpt, "--out", Out("x2"), "--steps", "21", "--device", "cpu"));
        Assert.Equal(2, Run("sample", "--checkpoint", ckpt, "--out", Out("x3"), "--sampler", "ddim", "--eta", "1.5", "--device", "cpu"));
        Assert.Equal(2, Run("sample", "--checkpoint", ckpt, "--out", Out("x4"), "--class", "1", "--device", "cpu"));
        Assert.Equal(2, Run("sample", "--checkpoint", ckpt, "--out", Out("x5"), "--sampler", "euler", "--device", "cpu"));
        Assert.False(Directory.Exists(Out("x1")) && Directory.EnumerateFiles(Out("x1")).Any());
        // The few-step solvers: their spellings, spacings and thresholding; bad values are usage errors.
        Assert.Equal(0, Run("sample", "--checkpoint", ckpt, "--num", "2", "--out", Out("dpm"), "--sampler", "dpmpp-2m", "--steps", "5",
            "--spacing", "lambda", "--dynamic-threshold", "0.995", "--frames", "0", "--device", "cpu"));
        Assert.True(File.Exists(Path.Combine(Out("dpm"), "samples.png")));
        Assert.Equal(0, Run("sample", "--checkpoint", ckpt, "--num", "2", "--out", Out("sde"), "--sampler", "dpmpp-2m-sde", "--steps", "4",
            "--frames", "0", "--device", "cpu"));
        Assert.Equal(0, Run("sample", "--checkpoint", ckpt, "--num", "2", "--out", Out("unipc"), "--sampler", "unipc", "--frames", "0", "--device", "cpu"));
        Assert.Equal(2, Run("sample", "--checkpoint", ckpt, "--out", Out("x6"), "--sampler", "unipc", "--spacing", "cubic", "--device", "cpu"));
        Assert.Equal(2, Run("sample", "--checkpoint", ckpt, "--out", Out("x7"), "--sampler", "dpmpp-2m", "--dynamic-threshold", "1.5", "--device", "cpu"));
        Assert.Equal(2, Run("sample", "--checkpoint", ckpt, "--out", Out("x8"), "--sampler", "ddim", "--dynamic-threshold", "0.99", "--device", "cpu"));
        Assert.Equal(2, Run("eval", "--checkpoint", ckpt, "--out", Out("x9"), "--sampler", "dpmpp-4m", "--device", "cpu"));
        Assert.Equal(2, Run("eval", "--checkpoint", ckpt, "--out", Out("x9"), "--sampler", "unipc", "--spacing", "cubic", "--device", "cpu"));
        Assert.False(Directory.Exists(Out("x6")) || Directory.Exists(Out("x9")) && Directory.EnumerateFiles(Out("x9")).Any());
    }

    [Fact]
    public void Sampling_in_bf16_gives_nearly_the_fp32_images_and_an_unknown_precision_is_a_usage_error()
    {
        var config = WriteConfig(TinyYaml);
        var run = Path.Combine(_dir, "run-bf16");
        Assert.Equal(0, Run("train", "--config", config, "--out", run, "--max-steps", "3", "--device", "cpu"));
        var ckpt = Path.Combine(run, "checkpoint.ckpt");
        string Sample(string name, string precision)
        {
            var dir = Path.Combine(_dir, name);
            Assert.Equal(0, Run("sample", "--checkpoint", ckpt, "--num", "4", "--out", dir, "--sampler", "ddim", "--steps", "5",
                "--frames", "0", "--precision", precision, "--device", "cpu"));
            return Path.Combine(dir, "samples.png");
        }
        using var fp32 = SKBitmap.Decode(Sample("fp32", "fp32"));
        using var bf16 = SKBitmap.Decode(Sample("bf16", "bf16"));
        Assert.Equal((fp32.Width, fp32.Height), (bf16.Width, bf16.Height));
        double diff = 0;
        for (int y = 0; y < fp32.Height; y++)
            for (int x = 0; x < fp32.Width; x++) diff += Math.Abs(fp32.GetPixel(x, y).Red - bf16.GetPixel(x, y).Red);
        diff /= fp32.Width * fp32.Height;
        Assert.True(diff > 0, "the bf16 grid equals the fp32 one: --precision bf16 had no effect");
        Assert.True(diff < 6, $"bf16 grid differs from fp32 by {diff:F2} gray levels on average (deterministic DDIM, 5 steps)");
        Assert.Equal(2, Run("sample", "--checkpoint", ckpt, "--out", Path.Combine(_dir, "bad"), "--precision", "fp8", "--device", "cpu"));
    }

    [Fact]
    public void A_conditional_model_samples_a_requested_class_and_rejects_unknown_ones()
    {
        var yaml = TinyYaml.Replace("  num_heads: 4", "  num_heads: 4\n  num_classes: 2").Replace("  lr: 0.001", "  lr: 0.001\n  label_dropout: 0.2\n  ema_decay: 0.99");
        var config = WriteConfig(yaml, "cond.yaml");
        var run = Path.Combine(_dir, "cond");
        Assert.Equal(0, Run("train", "--config", config, "--out", run, "--max-steps", "2", "--device", "cpu"));
        var ckpt = Path.Combine(run, "checkpoint.ckpt");
        Assert.True(Checkpoint.HasEma(ckpt));
        Assert.Equal(0, Run("sample", "--checkpoint", ckpt, "--num", "2", "--out", Path.Combine(_dir, "c1"), "--class", "1", "--guidance", "3", "--steps", "5", "--frames", "0", "--device", "cpu"));
        Assert.Equal(2, Run("sample", "--checkpoint", ckpt, "--out", Path.Combine(_dir, "c2"), "--class", "2", "--device", "cpu"));
        // --guidance without --class: image i asks for class i mod num_classes (the same images as --class 0 / --class
        // 1).
        string Grid(string name, params string[] extra)
        {
            var dir = Path.Combine(_dir, name);
            Assert.Equal(0, Run(["sample", "--checkpoint", ckpt, "--num", "2", "--grid-rows", "2", "--seed", "0", "--out", dir,
                "--guidance", "1", "--sampler", "ddim", "--steps", "5", "--frames", "0", "--device", "cpu", .. extra]));
            return Path.Combine(dir, "samples.png");
        }
        using (var cycled = SKBitmap.Decode(Grid("c3")))
        using (var zero = SKBitmap.Decode(Grid("c4", "--class", "0")))
        using (var one = SKBitmap.Decode(Grid("c5", "--class", "1")))
        {
            // Two 16×16 cells side by side with 2-pixel borders: cell k spans x = 2 + 18k .. 17 + 18k.
            static bool SameCell(SKBitmap a, SKBitmap b, int k) => Enumerable.Range(2, 16).All(y =>
                Enumerable.Range(2 + 18 * k, 16).All(x => a.GetPixel(x, y) == b.GetPixel(x, y)));
            Assert.True(SameCell(cycled, zero, 0), "image 0 is not the class-0 sample");
            Assert.True(SameCell(cycled, one, 1), "image 1 is not the class-1 sample");
            Assert.False(SameCell(cycled, zero, 1), "image 1 equals the class-0 sample: the labels did not cycle");
        }
        // --ema exports the average, which differs from the raw weights after training.
        var raw = Path.Combine(_dir, "raw.safetensors");
        var ema = Path.Combine(_dir, "ema.safetensors");
        Assert.Equal(0, Run("export", "--checkpoint", ckpt, "--to", raw));
        Assert.Equal(0, Run("export", "--checkpoint", ckpt, "--to", ema, "--ema"));
        Assert.NotEqual(File.ReadAllBytes(raw), File.ReadAllBytes(ema));
    }
}
