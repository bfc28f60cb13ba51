using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;
using Ddpm.Imaging;
using SkiaSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Imaging;

public class ImagingTests
{
    [Fact]
    public void ToPng_lays_out_the_grid_and_maps_minus_one_to_0_and_one_to_255()
    {
        using var scope = NewDisposeScope();
        // 5 images of 3×4 (H×W), 3 per row → 2 rows. Image i is constant: −1, −0.5, 0, 0.5, 1; values beyond ±1 clamp.
        float[] levels = [-1f, -0.5f, 0f, 0.5f, 1f];
        var images = stack(levels.Select(v => full(new long[] { 1, 3, 4 }, v)).ToArray());
        images[4, 0, 0, 0] = tensor(7f); // clamped to 1
        images[0, 0, 0, 0] = tensor(-3f); // clamped to −1
        var png = ImageGrid.ToPng(images, perRow: 3);
        using var bitmap = SKBitmap.Decode(png);
        Assert.NotNull(bitmap);
        Assert.Equal(3 * (4 + 2) + 2, bitmap.Width);
        Assert.Equal(2 * (3 + 2) + 2, bitmap.Height);
        // (v + 1)/2·255 rounded: 0, 64, 128, 191, 255.
        byte[] expected = [0, 64, 128, 191, 255];
        for (int i = 0; i < 5; i++)
        {
            int x0 = 2 + (i % 3) * 6, y0 = 2 + (i / 3) * 5;
            for (int y = 0; y < 3; y++)
                for (int x = 0; x < 4; x++)
                {
                    var c = bitmap.GetPixel(x0 + x, y0 + y);
                    Assert.True(c.Red == expected[i] && c.Green == expected[i] && c.Blue == expected[i],
                        $"image {i} pixel ({x},{y}) is {c}, expected gray {expected[i]}");
                }
        }
        // Padding is black, and the empty sixth cell too.
        Assert.Equal(SKColors.Black, bitmap.GetPixel(0, 0));
        Assert.Equal(SKColors.Black, bitmap.GetPixel(1, 5));
        Assert.Equal(SKColors.Black, bitmap.GetPixel(2 + 2 * 6 + 1, 2 + 5 + 1));
    }

    [Fact]
    public void ToPng_keeps_the_colour_channels_of_rgb_images()
    {
        using var scope = NewDisposeScope();
        var image = stack(new[] { full(new long[] { 2, 2 }, 1f), full(new long[] { 2, 2 }, -1f), full(new long[] { 2, 2 }, 0f) }).unsqueeze(0);
        using var bitmap = SKBitmap.Decode(ImageGrid.ToPng(image, perRow: 1));
        Assert.Equal(6, bitmap.Width);
        var c = bitmap.GetPixel(2, 2);
        Assert.Equal((byte)255, c.Red);
        Assert.Equal((byte)0, c.Green);
        Assert.Equal((byte)128, c.Blue);
    }

    private static List<(string Type, byte[] Data, uint Crc)> ParseChunks(byte[] png)
    {
        Assert.Equal(new byte[] { 137, 80, 78, 71, 13, 10, 26, 10 }, png[..8]);
        var chunks = new List<(string, byte[], uint)>();
        int at = 8;
        while (at < png.Length)
        {
            int length = (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at));
            var type = Encoding.ASCII.GetString(png, at + 4, 4);
            var data = png.AsSpan(at + 8, length).ToArray();
            uint crc = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(at + 8 + length));
            uint computed = Crc32.HashToUInt32(png.AsSpan(at + 4, 4 + length));
            Assert.True(crc == computed, $"chunk {type} at {at}: CRC {crc:X8}, computed {computed:X8}");
            chunks.Add((type, data, crc));
            at += 12 + length;
        }
        Assert.Equal(png.Length, at);
        return chunks;
    }

    [Fact]
    public void Assemble_writes_an_apng_with_three_frames_and_valid_crcs()
    {
        using var scope = NewDisposeScope();
        var frames = new[] { -1f, 0f, 1f }.Select(v => ImageGrid.ToPng(full(new long[] { 4, 1, 5, 5 }, v), perRow: 2)).ToList();
        var apng = AnimatedPng.Assemble(frames, frameMilliseconds: 40);
        var chunks = ParseChunks(apng);

        Assert.Equal("IHDR", chunks[0].Type);
        Assert.Equal("IEND", chunks[^1].Type);
        var actl = chunks.Single(c => c.Type == "acTL").Data;
        Assert.Equal(3u, BinaryPrimitives.ReadUInt32BigEndian(actl));
        Assert.Equal(0u, BinaryPrimitives.ReadUInt32BigEndian(actl.AsSpan(4)));
        Assert.True(chunks.FindIndex(c => c.Type == "acTL") < chunks.FindIndex(c => c.Type == "IDAT"));
        var fctls = chunks.Where(c => c.Type == "fcTL").Select(c => c.Data).ToList();
        Assert.Equal(3, fctls.Count);
        Assert.Contains(chunks, c => c.Type == "IDAT");
        Assert.Contains(chunks, c => c.Type == "fdAT");
        // Sequence numbers of fcTL and fdAT run 0, 1, 2, … without gaps.
        var sequence = chunks.Where(c => c.Type is "fcTL" or "fdAT").Select(c => BinaryPrimitives.ReadUInt32BigEndian(c.Data)).ToList();
        Assert.Equal(Enumerable.Range(0, sequence.Count).Select(i => (uint)i), sequence);
        int width = 2 * 7 + 2, height = 2 * 7 + 2;
        foreach (var f in fctls)
        {
            Assert.Equal((uint)width, BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(4)));
            Assert.Equal((uint)height, BinaryPrimitives.ReadUInt32BigEndian(f.AsSpan(8)));
        }
        Assert.Equal(40, BinaryPrimitives.ReadUInt16BigEndian(fctls[0].AsSpan(20)));
        Assert.Equal(1000, BinaryPrimitives.ReadUInt16BigEndian(fctls[0].AsSpan(22)));

        using var bitmap = SKBitmap.Decode(apng);
        Assert.NotNull(bitmap);
        Assert.Equal(width, bitmap.Width);
        Assert.Equal(height, bitmap.Height);
        Assert.Equal((byte)0, bitmap.GetPixel(3, 3).Red); // the default image is the first frame (all −1)
    }

    [Fact]
    public void Assemble_rejects_frames_of_different_sizes()
    {
        using var scope = NewDisposeScope();
        var a = ImageGrid.ToPng(zeros(1, 1, 4, 4), 1);
        var b = ImageGrid.ToPng(zeros(1, 1, 5, 5), 1);
        Assert.Throws<ArgumentException>(() => AnimatedPng.Assemble([a, b]));
    }
}
