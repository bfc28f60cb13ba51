using System.Buffers.Binary;
using Ddpm.Data;
using Ddpm.IO;
using Ddpm.Imaging;
using SkiaSharp;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>
/// Image sets to evaluate: an IDX image file (raw or gzipped) or a folder of PNG/JPEG files (flat or label subfolders).
/// Nothing is resized or converted: every image must already be 1-channel (grayscale) 28 × 28, else a
/// <see cref="DataException"/> names the first offending file.
/// </summary>
public static class EvaluationImages
{
    /// <summary>Reads <paramref name="path"/> as uint8 [N, 1, 28, 28].</summary>
    public static ImageDataset Load(string path)
    {
        if (Directory.Exists(path))
        {
            foreach (var file in Directory.EnumerateFiles(path, "*", SearchOption.AllDirectories).Order(StringComparer.Ordinal))
            {
                if (Path.GetFileName(file).StartsWith('.') || !ImageFolderReader.Extensions.Contains(Path.GetExtension(file).ToLowerInvariant())) continue;
                using var codec = SKCodec.Create(file) ?? throw new DataException(file, "cannot be decoded as an image");
                var info = codec.Info;
                if (info.Width != MnistClassifier.ImageSize || info.Height != MnistClassifier.ImageSize)
                    throw new DataException(file, $"is {info.Width}×{info.Height}; evaluation needs 28×28 images (they are not resized)");
                if (info.ColorType != SKColorType.Gray8)
                    throw new DataException(file, $"has color channels ({info.ColorType}); evaluation needs 1-channel grayscale images");
            }
            return ImageFolderReader.Read(path, 1, MnistClassifier.ImageSize);
        }
        if (!File.Exists(path)) throw new DataException(path, "is neither an image folder nor an IDX file");
        var dataset = IdxReader.Read(path);
        if (dataset.Height != MnistClassifier.ImageSize || dataset.Width != MnistClassifier.ImageSize)
        {
            var (h, w) = (dataset.Height, dataset.Width);
            dataset.Dispose();
            throw new DataException(path, $"holds {w}×{h} images; evaluation needs 28×28");
        }
        return dataset;
    }

    /// <summary>Writes images in [−1, 1] [N, 1, H, W] as an IDX image file (magic 2051) of their 256-level pixels,
    /// atomically.</summary>
    public static void SaveIdx(Tensor images, string path)
    {
        if (images.dim() != 4 || images.shape[1] != 1)
            throw new ArgumentException($"IDX image files hold 1-channel images [N, 1, H, W], got [{string.Join(", ", images.shape)}]");
        using var bytes = Pixels.ToBytes(images).cpu().contiguous();
        var body = bytes.data<byte>().ToArray();
        var file = new byte[16 + body.Length];
        BinaryPrimitives.WriteInt32BigEndian(file.AsSpan(0), IdxReader.ImageMagic);
        BinaryPrimitives.WriteInt32BigEndian(file.AsSpan(4), (int)images.shape[0]);
        BinaryPrimitives.WriteInt32BigEndian(file.AsSpan(8), (int)images.shape[2]);
        BinaryPrimitives.WriteInt32BigEndian(file.AsSpan(12), (int)images.shape[3]);
        body.CopyTo(file, 16);
        AtomicFile.WriteAllBytes(path, file);
    }
}
