using Ddpm.Data;
using SkiaSharp;
using static TorchSharp.torch;

namespace Ddpm.Imaging;

/// <summary>
/// The inputs of an edit (inpainting, image-to-image) from PNG/JPEG files: read pixel for pixel at the model's size,
/// never resized, since inpainting keeps the known pixels as given. A path is one image or a flat folder of them
/// (sorted by name). Images become float32 [M, C, H, W] in [−1, 1] (v/127.5 − 1, the levels a saved PNG holds); masks
/// become [M, 1, H, W] of 0 and 1, white (luma ≥ 128) = keep, black = inpaint. Alpha is ignored. Every problem is a
/// <see cref="DataException"/> naming the file.
/// </summary>
public static class EditImages
{
    /// <summary>File extensions read as images (case-insensitive).</summary>
    public static readonly IReadOnlyList<string> Extensions = [".png", ".jpg", ".jpeg"];

    /// <summary>
    /// Reads <paramref name="path"/> (a file or a folder) as <paramref name="channels"/>-channel images of
    /// <paramref name="size"/> × <paramref name="size"/>. A grayscale image (R = G = B everywhere) is read as 1 channel
    /// or, for a 3-channel model, as RGB; a colour image for a 1-channel model is refused rather than converted.
    /// </summary>
    public static Tensor ReadImages(string path, int channels, int size) =>
        Read(path, f => DecodeImage(Bytes(f), f, channels, size));

    /// <summary>Reads <paramref name="path"/> (a file or a folder) as masks of size × size.</summary>
    public static Tensor ReadMasks(string path, int size) => Read(path, f => DecodeMask(Bytes(f), f, size));

    /// <summary>
    /// One encoded image (e.g. a PNG the page drew) as [1, C, size, size] in [−1, 1]; <paramref name="name"/> names it
    /// in errors.
    /// </summary>
    public static Tensor DecodeImage(byte[] encoded, string name, int channels, int size)
    {
        if (channels is not (1 or 3))
            throw new ArgumentOutOfRangeException(nameof(channels), channels, "1 or 3 channels");
        var (rgba, stride) = Decode(encoded, name, size);
        var values = new float[channels * size * size];
        int plane = size * size;
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
            {
                int p = y * stride + 4 * x;
                byte r = rgba[p], g = rgba[p + 1], b = rgba[p + 2];
                if (channels == 1 && (r != g || g != b))
                    throw new DataException(name, $"has colour (the pixel at x = {x}, y = {y} is RGB {r}, {g}, {b}); " +
                        "the model makes 1-channel (grayscale) images: convert it to grayscale first");
                int o = y * size + x;
                values[o] = r / 127.5f - 1;
                if (channels == 3)
                {
                    values[plane + o] = g / 127.5f - 1;
                    values[2 * plane + o] = b / 127.5f - 1;
                }
            }
        return tensor(values, [1, channels, size, size], dtype: float32);
    }

    /// <summary>One encoded mask as [1, 1, size, size] of 0 and 1: luma (ITU-R 601) ≥ 128 keeps the pixel.</summary>
    public static Tensor DecodeMask(byte[] encoded, string name, int size)
    {
        var (rgba, stride) = Decode(encoded, name, size);
        var values = new float[size * size];
        for (int y = 0; y < size; y++)
            for (int x = 0; x < size; x++)
            {
                int p = y * stride + 4 * x;
                int luma = (19595 * rgba[p] + 38470 * rgba[p + 1] + 7471 * rgba[p + 2] + 0x8000) >> 16;
                values[y * size + x] = luma >= 128 ? 1f : 0f;
            }
        return tensor(values, [1, 1, size, size], dtype: float32);
    }

    /// <summary>RGBA rows (unpremultiplied) and their stride, after checking that the image is <paramref name="size"/>
    /// square.</summary>
    private static (byte[] Rgba, int Stride) Decode(byte[] encoded, string name, int size)
    {
        using var data = SKData.CreateCopy(encoded);
        using var codec = SKCodec.Create(data)
            ?? throw new DataException(name, "cannot be decoded as an image (PNG or JPEG expected)");
        var (width, height) = (codec.Info.Width, codec.Info.Height);
        if (width != size || height != size)
            throw new DataException(name, $"is {width}×{height}; the model makes {size}×{size} images (edit inputs " +
                "are used pixel for pixel, not resized)");
        var info = new SKImageInfo(width, height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        using var bitmap = new SKBitmap(info);
        var status = codec.GetPixels(info, bitmap.GetPixels());
        if (status != SKCodecResult.Success)
            throw new DataException(name, $"cannot be decoded as an image ({status})");
        return (bitmap.GetPixelSpan().ToArray(), bitmap.RowBytes);
    }

    /// <summary>The file, or the folder's image files in name order (hidden names skipped).</summary>
    private static List<string> Files(string path)
    {
        if (File.Exists(path)) return [path];
        if (!Directory.Exists(path))
            throw new DataException(path, "does not exist (give an image file or a folder of them)");
        var files = Directory.GetFiles(path).Where(f => !Path.GetFileName(f).StartsWith('.'))
            .Order(StringComparer.Ordinal).ToList();
        foreach (var f in files)
            if (!Extensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                throw new DataException(f, $"is not an image file (expected {string.Join(", ", Extensions)})");
        if (files.Count == 0) throw new DataException(path, $"holds no image files ({string.Join(", ", Extensions)})");
        return files;
    }

    private static byte[] Bytes(string file)
    {
        try { return File.ReadAllBytes(file); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new DataException(file, $"cannot be read: {e.Message}");
        }
    }

    private static Tensor Read(string path, Func<string, Tensor> decode)
    {
        using var scope = NewDisposeScope();
        var images = Files(path).Select(decode).ToList();
        return (images.Count == 1 ? images[0] : cat(images, 0)).MoveToOuterDisposeScope();
    }
}
