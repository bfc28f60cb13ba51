using SkiaSharp;
using static TorchSharp.torch;

namespace Ddpm.Imaging;

/// <summary>Image grids as PNG, like torchvision's make_grid + save_image (the reference's sample output).</summary>
public static class ImageGrid
{
    /// <summary>
    /// Lays out images [N, C, H, W] with values in [−1, 1] (clamped) <paramref name="perRow"/> to a row with
    /// <paramref name="padding"/> black pixels between them, and encodes the grid as PNG (grayscale for C = 1, RGB for
    /// C = 3).
    /// </summary>
    public static byte[] ToPng(Tensor images, int perRow, int padding = 2)
    {
        var (pixels, width, height, channels) = Layout(images, perRow, padding);
        return Encode(pixels, width, height, channels);
    }

    /// <summary>Writes <see cref="ToPng"/> to a file atomically (<see cref="IO.AtomicFile"/>: no half-written PNG is
    /// ever left behind).</summary>
    public static void SavePng(Tensor images, int perRow, string path, int padding = 2) =>
        IO.AtomicFile.WriteAllBytes(path, ToPng(images, perRow, padding));

    private static (byte[] Pixels, int Width, int Height, int Channels) Layout(Tensor images, int perRow, int padding)
    {
        if (images.dim() != 4) throw new ArgumentException($"images must be [N, C, H, W], got [{string.Join(", ", images.shape)}]");
        int n = (int)images.shape[0], c = (int)images.shape[1], h = (int)images.shape[2], w = (int)images.shape[3];
        if (c != 1 && c != 3) throw new ArgumentException($"images must have 1 or 3 channels, got {c}");
        if (perRow < 1) throw new ArgumentOutOfRangeException(nameof(perRow), "at least one image per row");
        int cols = Math.Min(perRow, n), rows = (n + cols - 1) / cols;
        int width = cols * (w + padding) + padding, height = rows * (h + padding) + padding;
        byte[] src;
        using (var scope = NewDisposeScope())
        {
            // (x + 1)/2 · 255, rounded as torchvision's save_image does (mul(255).add_(0.5).clamp_(0, 255)).
            var bytes = images.detach().cpu().to(float32).clamp(-1, 1).add(1).mul(127.5).add(0.5).clamp(0, 255).to(ScalarType.Byte)
                .permute(0, 2, 3, 1).contiguous();
            src = bytes.data<byte>().ToArray();
        }
        var pixels = new byte[width * height * c];
        for (int i = 0; i < n; i++)
        {
            int x0 = padding + (i % cols) * (w + padding), y0 = padding + (i / cols) * (h + padding);
            for (int y = 0; y < h; y++)
                Buffer.BlockCopy(src, ((i * h + y) * w) * c, pixels, ((y0 + y) * width + x0) * c, w * c);
        }
        return (pixels, width, height, c);
    }

    private static byte[] Encode(byte[] pixels, int width, int height, int channels)
    {
        var info = new SKImageInfo(width, height, channels == 1 ? SKColorType.Gray8 : SKColorType.Rgba8888, SKAlphaType.Opaque);
        var rgba = pixels;
        if (channels == 3)
        {
            rgba = new byte[width * height * 4];
            for (int p = 0, q = 0; p < pixels.Length; p += 3, q += 4)
            {
                rgba[q] = pixels[p];
                rgba[q + 1] = pixels[p + 1];
                rgba[q + 2] = pixels[p + 2];
                rgba[q + 3] = 255;
            }
        }
        using var bitmap = new SKBitmap(info);
        System.Runtime.InteropServices.Marshal.Copy(rgba, 0, bitmap.GetPixels(), rgba.Length);
        using var image = SKImage.FromBitmap(bitmap);
        using var data = image.Encode(SKEncodedImageFormat.Png, 100);
        return data.ToArray();
    }
}
