using Ddpm.Imaging;
using SkiaSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Cli;

/// <summary>
/// <c>ddpm inpaint</c>, <c>ddpm sample --init</c> and <c>ddpm interpolate</c> on a tiny class-conditional checkpoint:
/// what they write, that they agree with sampling where the maths says so, and one clear line (exit 2) for each bad
/// input.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public sealed class EditCliTests : IDisposable
{
    private const int Size = 8;
    private readonly string _dir = TestPaths.TempDir("edit-cli");
    private readonly string _ckpt;

    public EditCliTests()
    {
        var config = Path.Combine(_dir, "tiny.yaml");
        File.WriteAllText(config, TinyCli.Yaml(imSize: Size).Replace("  num_heads: 4", "  num_heads: 4\n  num_classes: 2")
            .Replace("  lr: 0.001", "  lr: 0.001\n  label_dropout: 0.2"));
        var run = Path.Combine(_dir, "run");
        Assert.Equal(0, TinyCli.Run("train", "--config", config, "--out", run, "--max-steps", "2", "--device", "cpu"));
        _ckpt = Path.Combine(run, "checkpoint.ckpt");
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>Writes images [N, C, H, W] in [−1, 1] as one PNG each (no padding) into a folder, or one file when N =
    /// 1.</summary>
    private string Png(string name, Tensor images)
    {
        using var scope = NewDisposeScope();
        if (images.shape[0] == 1)
        {
            var file = Path.Combine(_dir, name + ".png");
            File.WriteAllBytes(file, ImageGrid.ToPng(images, 1, padding: 0));
            return file;
        }
        var folder = Path.Combine(_dir, name);
        Directory.CreateDirectory(folder);
        for (int i = 0; i < images.shape[0]; i++) File.WriteAllBytes(Path.Combine(folder, $"{i:D2}.png"), ImageGrid.ToPng(images.narrow(0, i, 1), 1, padding: 0));
        return folder;
    }

    /// <summary>Two 8×8 inputs: a ramp and a checkerboard.</summary>
    private static Tensor Inputs()
    {
        var ramp = arange(64, dtype: float32).reshape(1, 1, Size, Size) * 4 / 127.5 - 1;
        var checker = (arange(Size).reshape(Size, 1) + arange(Size).reshape(1, Size)).remainder(2).to(float32).reshape(1, 1, Size, Size) * 2 - 1;
        return cat([ramp, checker], 0);
    }

    private static Tensor TopHalf()
    {
        var mask = -ones(1, 1, Size, Size);
        mask[.., .., ..(Size / 2), ..] = 1;
        return mask;
    }

    /// <summary>The cells of a grid PNG (2-pixel padding) as gray bytes [cell][y, x].</summary>
    private static List<byte[,]> Cells(string png, int count, int perRow)
    {
        using var bitmap = SKBitmap.Decode(png);
        var cells = new List<byte[,]>();
        for (int i = 0; i < count; i++)
        {
            var cell = new byte[Size, Size];
            int x0 = 2 + (i % perRow) * (Size + 2), y0 = 2 + (i / perRow) * (Size + 2);
            for (int y = 0; y < Size; y++)
                for (int x = 0; x < Size; x++) cell[y, x] = bitmap.GetPixel(x0 + x, y0 + y).Red;
            cells.Add(cell);
        }
        return cells;
    }

    private static byte[,] Bytes(Tensor image)
    {
        var data = Pixels.ToBytes(image).reshape(Size, Size).data<byte>().ToArray();
        var cell = new byte[Size, Size];
        for (int i = 0; i < data.Length; i++) cell[i / Size, i % Size] = data[i];
        return cell;
    }

    private static int MaxGap(byte[,] a, byte[,] b) =>
        Enumerable.Range(0, Size * Size).Max(i => Math.Abs(a[i / Size, i % Size] - b[i / Size, i % Size]));

    [Fact]
    public void Inpaint_keeps_the_white_part_of_the_mask_for_every_input_and_resamples_with_ddpm()
    {
        using var scope = NewDisposeScope();
        var inputs = Inputs();
        var images = Png("inputs", inputs);
        var mask = Png("top", TopHalf());
        foreach (var (name, extra) in new[] { ("plain", Array.Empty<string>()), ("repaint", ["--sampler", "ddpm", "--steps", "6", "--resample", "2", "--jump", "2"]) })
        {
            var outDir = Path.Combine(_dir, name);
            var (code, stderr) = TinyCli.RunCapturingStderr(["inpaint", "--checkpoint", _ckpt, "--image", images, "--mask", mask, "--num", "4",
                "--class", "1", "--guidance", "1", "--seed", "3", "--out", outDir, "--device", "cpu", .. extra]);
            Assert.True(code == 0, stderr);
            var grid = Path.Combine(outDir, "samples.png");
            Assert.True(File.Exists(Path.Combine(outDir, "reverse.png")));
            var cells = Cells(grid, 4, 2);
            for (int i = 0; i < 4; i++)
            {
                var expected = Bytes(inputs[i % 2]);
                for (int y = 0; y < Size / 2; y++)
                    for (int x = 0; x < Size; x++) Assert.Equal(expected[y, x], cells[i][y, x]);
                Assert.True(Enumerable.Range(Size / 2 * Size, Size * Size / 2).Any(p => cells[i][p / Size, p % Size] != expected[p / Size, p % Size]),
                    $"{name}: image {i}'s bottom half is the input's");
            }
            Assert.Contains(name == "plain" ? "in 20 steps" : "in 10 steps", stderr); // model calls: r = 2, j = 2 over 6 steps: 6 + 2·2 = 10
        }
    }

    public static TheoryData<string, string, string> BadInpaintInputs() => new()
    {
        { "small", "top", "is 16×16; the model makes 8×8 images" },
        { "colour", "top", "has colour" },
        { "inputs", "small", "--mask" },
        { "inputs", "white", "keeps every pixel: nothing to inpaint" },
        { "inputs", "black", "keeps no pixel" },
        { "inputs", "masks3", "the mask is [3, 1, 8, 8]" },
        { "missing", "top", "does not exist" },
    };

    [Theory]
    [MemberData(nameof(BadInpaintInputs))]
    public void Inpaint_refuses_each_bad_input_in_one_line_and_writes_nothing(string image, string mask, string expected)
    {
        using var scope = NewDisposeScope();
        var files = new Dictionary<string, string>
        {
            ["inputs"] = Png("inputs", Inputs()),
            ["small"] = Png("small", zeros(1, 1, 16, 16)),
            ["colour"] = Png("colour", cat([ones(1, 1, Size, Size), -ones(1, 2, Size, Size)], 1)),
            ["top"] = Png("top", TopHalf()),
            ["white"] = Png("white", ones(1, 1, Size, Size)),
            ["black"] = Png("black", -ones(1, 1, Size, Size)),
            ["masks3"] = Png("masks3", cat([TopHalf(), TopHalf(), TopHalf()], 0)),
            ["missing"] = Path.Combine(_dir, "no-such.png"),
        };
        var outDir = Path.Combine(_dir, "out");
        var (code, stderr) = TinyCli.RunCapturingStderr("inpaint", "--checkpoint", _ckpt, "--image", files[image], "--mask", files[mask],
            "--out", outDir, "--device", "cpu");
        Assert.Equal(2, code);
        var line = Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("error: ", line);
        Assert.Contains(expected, line);
        Assert.False(Directory.Exists(outDir));
    }

    [Theory]
    [InlineData(new[] { "--resample", "2" }, "resampling needs a single-step sampler")]
    [InlineData(new[] { "--sampler", "ddpm", "--steps", "5", "--resample", "2", "--jump", "5" }, "the jump length 5 must be below the sampler's 5 steps")]
    [InlineData(new[] { "--resample", "0" }, "--resample must be >= 1")]
    [InlineData(new[] { "--guidance", "2" }, "guidance needs class labels")]
    [InlineData(new[] { "--class", "2" }, "class 2")]
    public void Inpaint_refuses_bad_settings_in_one_line(string[] extra, string expected)
    {
        using var scope = NewDisposeScope();
        var (code, stderr) = TinyCli.RunCapturingStderr(["inpaint", "--checkpoint", _ckpt, "--image", Png("inputs", Inputs()), "--mask", Png("top", TopHalf()),
            "--out", Path.Combine(_dir, "out"), "--device", "cpu", .. extra]);
        Assert.Equal(2, code);
        Assert.Contains(expected, stderr);
        Assert.StartsWith("error: ", stderr);
    }

    [Fact]
    public void Sample_init_at_strength_one_is_sampling_and_bad_strengths_or_inputs_are_usage_errors()
    {
        using var scope = NewDisposeScope();
        var images = Png("inputs", Inputs());
        string Sample(string name, params string[] extra)
        {
            var outDir = Path.Combine(_dir, name);
            var (code, stderr) = TinyCli.RunCapturingStderr(["sample", "--checkpoint", _ckpt, "--num", "4", "--grid-rows", "2", "--frames", "0",
                "--seed", "7", "--sampler", "ddim", "--steps", "5", "--out", outDir, "--device", "cpu", .. extra]);
            Assert.True(code == 0, stderr);
            return Path.Combine(outDir, "samples.png");
        }
        Assert.Equal(File.ReadAllBytes(Sample("plain")), File.ReadAllBytes(Sample("one", "--init", images, "--strength", "1")));
        var edited = Cells(Sample("half", "--init", images, "--strength", "0.5"), 4, 2);
        var plain = Cells(Sample("plain2"), 4, 2);
        Assert.True(MaxGap(edited[0], plain[0]) > 10, "strength 0.5 gave the sample from noise");
        // Tiny strengths leave the input nearly as it is: the last step's σ_0 = 0.01 times the model's error in ε.
        var close = Cells(Sample("tiny", "--init", images, "--strength", "0.001"), 4, 2);
        for (int i = 0; i < 4; i++) Assert.True(MaxGap(close[i], Bytes(Inputs()[i % 2])) <= 8, $"image {i} moved {MaxGap(close[i], Bytes(Inputs()[i % 2]))} levels");

        foreach (var (args, expected) in new (string[], string)[]
        {
            (["--init", images, "--strength", "0"], "strength must lie in (0, 1], got 0"),
            (["--init", images, "--strength", "1.5"], "strength must lie in (0, 1], got 1.5"),
            (["--strength", "0.5"], "--strength applies to image-to-image: give --init IMG"),
            (["--init", Png("small", zeros(1, 1, 16, 16))], "is 16×16"),
            (["--init", Path.Combine(_dir, "none")], "does not exist"),
        })
        {
            var (code, stderr) = TinyCli.RunCapturingStderr(["sample", "--checkpoint", _ckpt, "--out", Path.Combine(_dir, "bad"), "--device", "cpu", .. args]);
            Assert.Equal(2, code);
            Assert.Contains(expected, stderr);
            Assert.Single(stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        }
    }

    [Fact]
    public void Interpolate_ends_at_the_two_seeds_samples_and_writes_a_strip_and_an_animation()
    {
        using var scope = NewDisposeScope();
        var outDir = Path.Combine(_dir, "path");
        var (code, stderr) = TinyCli.RunCapturingStderr("interpolate", "--checkpoint", _ckpt, "--seeds", "3,8", "--num", "5", "--steps", "6",
            "--out", outDir, "--device", "cpu");
        Assert.True(code == 0, stderr);
        var strip = Cells(Path.Combine(outDir, "samples.png"), 5, 5);
        using (var bitmap = SKBitmap.Decode(Path.Combine(outDir, "samples.png"))) Assert.Equal((52, 12), (bitmap.Width, bitmap.Height));
        var animation = AnimatedPng.Chunks(File.ReadAllBytes(Path.Combine(outDir, "path.png")));
        Assert.Equal(8, animation.Count(c => c.Type == "fcTL")); // 0 1 2 3 4 3 2 1
        byte[,] Sample(string seed)
        {
            var dir = Path.Combine(_dir, "seed" + seed);
            Assert.Equal(0, TinyCli.Run("sample", "--checkpoint", _ckpt, "--num", "1", "--seed", seed, "--sampler", "ddim", "--steps", "6",
                "--frames", "0", "--out", dir, "--device", "cpu"));
            return Cells(Path.Combine(dir, "samples.png"), 1, 1)[0];
        }
        // The same images up to float32 rounding between batch shapes, which may move a pixel by one level.
        Assert.True(MaxGap(strip[0], Sample("3")) <= 1);
        Assert.True(MaxGap(strip[4], Sample("8")) <= 1);
        Assert.True(MaxGap(strip[2], strip[0]) > 10 && MaxGap(strip[2], strip[4]) > 10);

        foreach (var (args, expected) in new (string[], string)[]
        {
            (["--seeds", "3"], "--seeds: expected two integers separated by a comma, got '3'"),
            (["--seeds", "3,x"], "--seeds: expected two integers"),
            (["--seeds", "1,2", "--num", "1"], "frames must be >= 2"),
            (["--seeds", "1,2", "--classes", "0,5"], "class 5"),
            (["--seeds", "1,2", "--indices", "-1,0"], "image indices must be >= 0"),
        })
        {
            var (bad, error) = TinyCli.RunCapturingStderr(["interpolate", "--checkpoint", _ckpt, "--out", Path.Combine(_dir, "bad"), "--device", "cpu", .. args]);
            Assert.Equal(2, bad);
            Assert.Contains(expected, error);
        }
        Assert.False(Directory.Exists(Path.Combine(_dir, "bad")));
    }
}
