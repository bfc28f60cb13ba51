using System.Globalization;
using SkiaSharp;
using static TorchSharp.torch;

namespace Ddpm.Data;

/// <summary>
/// Reads a folder of PNG/JPEG images into one uint8 [N, C, H, W] tensor. Two layouts: the reference's labelled
/// <c>&lt;folder&gt;/&lt;label&gt;/*.png</c> (label = the integer subfolder name), or a flat folder of images without
/// labels. Each image is converted to <c>channels</c> (1 = grayscale by ITU-R 601 luma as PIL's <c>convert("L")</c>, 3
/// = RGB; alpha is ignored), then its shorter side is resized to <c>size</c> and the centre cropped to size × size
/// (torchvision's <c>Resize(size)</c> + <c>CenterCrop(size)</c>). Images already size × size are copied unresampled.
/// Files and folders whose names start with '.' are skipped; any other non-image file is an error.
/// </summary>
internal static class ImageFolderReader
{
    /// <summary>File extensions read as images (case-insensitive).</summary>
    public static readonly IReadOnlyList<string> Extensions = [".png", ".jpg", ".jpeg"];

    /// <summary>The most pixels one image may declare (64 MP, 256 MiB as RGBA); larger headers are refused before
    /// decoding.</summary>
    public const long MaxPixels = 1L << 26;

    /// <summary>Reads <paramref name="folder"/> into images [N, <paramref name="channels"/>, <paramref name="size"/>,
    /// <paramref name="size"/>], labelled when it has label subfolders.</summary>
    public static ImageDataset Read(string folder, int channels, int size)
    {
        if (channels is not (1 or 3))
            throw new DataException(folder, $"cannot read images as {channels} channels (image folders give 1 = grayscale or 3 = RGB)");
        if (size < 1) throw new ArgumentOutOfRangeException(nameof(size), size, "must be >= 1");
        var (files, labels) = List(folder);
        var images = ByteTensor.Empty([files.Count, channels, size, size], folder);
        try
        {
            var errors = new DataException?[files.Count];
            long plane = (long)size * size;
            Parallel.For(0, files.Count, i =>
            {
                try
                {
                    var target = ByteTensor.Span(images).Slice((int)(i * channels * plane), (int)(channels * plane));
                    DecodeInto(files[i], channels, size, target);
                }
                catch (DataException e)
                {
                    errors[i] = e;
                }
            });
            // The first failing file in sorted order, so the message does not depend on thread timing.
            if (errors.FirstOrDefault(e => e is not null) is { } first) throw first;
            var labelTensor = labels is null ? null : tensor(labels, ScalarType.Int64);
            try
            {
                return new ImageDataset(images, labelTensor, $"image folder {folder} ({files.Count:N0} images)");
            }
            finally
            {
                labelTensor?.Dispose();
            }
        }
        catch
        {
            images.Dispose();
            throw;
        }
    }

    /// <summary>The image files in reading order and, for the labelled layout, their labels.</summary>
    private static (List<string> Files, long[]? Labels) List(string folder)
    {
        if (!Directory.Exists(folder))
            throw new DataException(folder, IO.PathCheck.IsLinkLoop(folder) ? "is a symbolic link loop" : File.Exists(folder) ? "is a file, not an image folder" : "image folder does not exist");
        var subfolders = Visible(Directory.GetDirectories(folder));
        var topFiles = Visible(Directory.GetFiles(folder));
        if (subfolders.Count == 0)
        {
            var flat = Images(topFiles);
            if (flat.Count == 0) throw new DataException(folder, $"image folder is empty: no {string.Join("/", Extensions)} files and no label subfolders");
            return (flat, null);
        }
        if (topFiles.Count > 0)
            throw new DataException(topFiles[0], "lies beside label subfolders; in a labelled folder every image must be in a <label>/ subfolder");
        var files = new List<string>();
        var labels = new List<long>();
        foreach (var (sub, label) in subfolders.Select(s => (s, Label(s))).OrderBy(p => p.Item2))
        {
            if (Visible(Directory.GetDirectories(sub)) is [var nested, ..])
                throw new DataException(nested, "nested folder inside a label folder; expected only images in <label>/");
            var images = Images(Visible(Directory.GetFiles(sub)));
            files.AddRange(images);
            labels.AddRange(Enumerable.Repeat(label, images.Count));
        }
        if (files.Count == 0) throw new DataException(folder, "image folder is empty: its label subfolders hold no images");
        return (files, labels.ToArray());
    }

    private static List<string> Visible(string[] paths) =>
        paths.Where(p => !Path.GetFileName(p).StartsWith('.')).Order(StringComparer.Ordinal).ToList();

    private static List<string> Images(List<string> files)
    {
        foreach (var f in files)
            if (!Extensions.Contains(Path.GetExtension(f).ToLowerInvariant()))
                throw new DataException(f, $"is not an image file (expected {string.Join(", ", Extensions)})");
        return files;
    }

    private static long Label(string subfolder)
    {
        var name = Path.GetFileName(subfolder);
        return long.TryParse(name, NumberStyles.None, CultureInfo.InvariantCulture, out var label) ? label
            : throw new DataException(subfolder, $"label folder name '{name}' is not a non-negative integer class label");
    }

    /// <summary>Decodes one file, converts, resizes and crops it into <paramref name="target"/> ([C, size, size]
    /// planes).</summary>
    private static void DecodeInto(string path, int channels, int size, Span<byte> target)
    {
        // Skia's "Unimplemented" says nothing to a user: an empty file, or a FIFO (whose read would block), is named.
        if (IO.PathCheck.FileProblem(path) is { } problem) throw new DataException(path, problem);
        if (new FileInfo(path).Length == 0) throw new DataException(path, "is empty (0 bytes), not an image");
        using var codec = SKCodec.Create(path, out var result)
            ?? throw new DataException(path, result == SKCodecResult.Unimplemented
                ? "cannot be decoded as an image: not PNG, JPEG, BMP, GIF or WebP data" : $"cannot be decoded as an image ({result})");
        var info = new SKImageInfo(codec.Info.Width, codec.Info.Height, SKColorType.Rgba8888, SKAlphaType.Unpremul);
        if (info.Width < 1 || info.Height < 1) throw new DataException(path, $"has no pixels ({info.Width}×{info.Height})");
        // The header's size is checked before the RGBA buffer of that size is allocated (a corrupt or hostile file may
        // declare billions of pixels in a few bytes).
        if ((long)info.Width * info.Height > MaxPixels)
            throw new DataException(path, $"declares {info.Width:N0}×{info.Height:N0} pixels, more than the {MaxPixels:N0} this reader decodes");
        using var decoded = new SKBitmap(info);
        if (decoded.GetPixels() == IntPtr.Zero) throw new DataException(path, $"cannot allocate {info.Width}×{info.Height} pixels");
        var status = codec.GetPixels(info, decoded.GetPixels());
        if (status != SKCodecResult.Success)
            throw new DataException(path, $"cannot be decoded as an image ({status})");

        SKBitmap pixels = decoded;
        SKBitmap? scaled = null;
        try
        {
            if (info.Width != size || info.Height != size)
            {
                int side = Math.Min(info.Width, info.Height);
                var crop = SKRectI.Create((info.Width - side) / 2, (info.Height - side) / 2, side, side);
                using var square = new SKBitmap();
                if (!decoded.ExtractSubset(square, crop)) throw new DataException(path, $"cannot crop {crop} from {info.Width}×{info.Height}");
                scaled = new SKBitmap(new SKImageInfo(size, size, SKColorType.Rgba8888, SKAlphaType.Unpremul));
                // Linear with mipmaps averages when shrinking a lot (e.g. a photo to 32×32) instead of aliasing.
                if (!square.ScalePixels(scaled, new SKSamplingOptions(SKFilterMode.Linear, SKMipmapMode.Linear)))
                    throw new DataException(path, $"cannot resize {side}×{side} to {size}×{size}");
                pixels = scaled;
            }
            Unpack(pixels, channels, size, target);
        }
        finally
        {
            scaled?.Dispose();
        }
    }

    /// <summary>RGBA rows → channel planes: R, G, B, or the luma L = (19595 R + 38470 G + 7471 B + 2^15) >> 16 (PIL's
    /// integer ITU-R 601-2).</summary>
    private static void Unpack(SKBitmap bitmap, int channels, int size, Span<byte> target)
    {
        ReadOnlySpan<byte> rgba = bitmap.GetPixelSpan();
        int stride = bitmap.RowBytes;
        int plane = size * size;
        for (int y = 0; y < size; y++)
        {
            var row = rgba.Slice(y * stride, size * 4);
            for (int x = 0; x < size; x++)
            {
                byte r = row[4 * x], g = row[4 * x + 1], b = row[4 * x + 2];
                int o = y * size + x;
                if (channels == 1)
                {
                    target[o] = (byte)((19595 * r + 38470 * g + 7471 * b + 0x8000) >> 16);
                }
                else
                {
                    target[o] = r;
                    target[plane + o] = g;
                    target[2 * plane + o] = b;
                }
            }
        }
    }
}
