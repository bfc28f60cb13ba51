using SkiaSharp;

namespace Ddpm.Tests.Data;

/// <summary>Writes small PNG/JPEG files with SkiaSharp for the image-folder tests.</summary>
public static class TestImages
{
    public static void Write(string path, int width, int height, Func<int, int, SKColor> color)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var bitmap = new SKBitmap(new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul));
        for (int y = 0; y < height; y++)
            for (int x = 0; x < width; x++)
                bitmap.SetPixel(x, y, color(x, y));
        var format = Path.GetExtension(path).ToLowerInvariant() is ".jpg" or ".jpeg" ? SKEncodedImageFormat.Jpeg : SKEncodedImageFormat.Png;
        using var data = bitmap.Encode(format, 100);
        File.WriteAllBytes(path, data.ToArray());
    }

    public static void Solid(string path, int width, int height, SKColor color) => Write(path, width, height, (_, _) => color);
}
