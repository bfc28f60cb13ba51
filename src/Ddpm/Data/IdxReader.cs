using System.Buffers.Binary;
using System.IO.Compression;
using static TorchSharp.torch;

namespace Ddpm.Data;

/// <summary>
/// Reads IDX files (LeCun's MNIST format): a big-endian magic number <c>0x0000TTDD</c> (type TT = 0x08 unsigned bytes,
/// DD dimensions), DD big-endian int32 sizes, then the data. Images are magic 2051 ([N, H, W]), labels 2049 ([N]).
/// Gzipped files (<c>.gz</c>, detected by their bytes) are decompressed on the fly. Every size in a header is checked
/// against what the file holds before anything of that size is allocated.
/// </summary>
internal static class IdxReader
{
    /// <summary>Magic number of an IDX image file: unsigned bytes, 3 dimensions.</summary>
    public const int ImageMagic = 0x0803;
    /// <summary>Magic number of an IDX label file: unsigned bytes, 1 dimension.</summary>
    public const int LabelMagic = 0x0801;

    /// <summary>
    /// Reads an image file and optionally its label file into one <see cref="ImageDataset"/> with images [N, 1, H, W].
    /// Labels must lie in 0..<paramref name="maxLabel"/> and their count must equal the image count.
    /// </summary>
    public static ImageDataset Read(string imagesPath, string? labelsPath = null, int maxLabel = 9)
    {
        var images = ReadImages(imagesPath);
        try
        {
            if (labelsPath is null) return new ImageDataset(images, null, $"IDX {imagesPath}");
            using var labels = ReadLabels(labelsPath, maxLabel);
            if (labels.shape[0] != images.shape[0])
                throw new DataException(labelsPath, $"holds {labels.shape[0]:N0} labels but {imagesPath} holds {images.shape[0]:N0} images");
            return new ImageDataset(images, labels, $"IDX {imagesPath} + {labelsPath}");
        }
        catch
        {
            images.Dispose();
            throw;
        }
    }

    /// <summary>Reads an IDX image file (magic 2051) as uint8 [N, 1, H, W].</summary>
    public static Tensor ReadImages(string path)
    {
        using var file = Open(path, out var stream);
        var dims = ReadHeader(path, stream, file.Length, ImageMagic, "image");
        long n = dims[0], h = dims[1], w = dims[2];
        var tensor = ByteTensor.Empty([n, 1, h, w], path);
        try
        {
            ReadBody(path, stream, ByteTensor.Span(tensor), "image");
            return tensor;
        }
        catch
        {
            tensor.Dispose();
            throw;
        }
    }

    /// <summary>Reads an IDX label file (magic 2049) as int64 [N], each in 0..<paramref name="maxLabel"/>.</summary>
    public static Tensor ReadLabels(string path, int maxLabel = 9)
    {
        using var file = Open(path, out var stream);
        var dims = ReadHeader(path, stream, file.Length, LabelMagic, "label");
        var bytes = new byte[dims[0]];
        ReadBody(path, stream, bytes, "label");
        for (int i = 0; i < bytes.Length; i++)
            if (bytes[i] > maxLabel)
                throw new DataException(path, $"label {i} is {bytes[i]}, outside the classes 0..{maxLabel}");
        using var raw = tensor(bytes, ScalarType.Byte);
        return raw.to(ScalarType.Int64);
    }

    /// <summary>
    /// Opens <paramref name="path"/>; <paramref name="stream"/> is the decompressed content (the file itself when not
    /// gzipped). Disposing the result closes both.
    /// </summary>
    private static FileStream Open(string path, out Stream stream)
    {
        if (IO.PathCheck.FileProblem(path) is { } problem) throw new DataException(path, problem);
        var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
        Span<byte> head = stackalloc byte[2];
        int got = file.ReadAtLeast(head, 2, throwOnEndOfStream: false);
        file.Position = 0;
        // 1F 8B opens every gzip member; an IDX file starts with two zero bytes.
        stream = got == 2 && head[0] == 0x1F && head[1] == 0x8B ? new GZipStream(file, CompressionMode.Decompress, leaveOpen: true) : file;
        return file;
    }

    private static bool IsGzip(Stream stream) => stream is GZipStream;

    /// <summary>Deflate expands at most ~1032:1, so a gzipped file of L bytes cannot hold more than this many times
    /// L.</summary>
    private const long MaxDeflateRatio = 1032;

    private static long[] ReadHeader(string path, Stream stream, long fileLength, int expectedMagic, string what)
    {
        Span<byte> word = stackalloc byte[4];
        ReadExact(path, stream, word, "the 4-byte magic number");
        int magic = BinaryPrimitives.ReadInt32BigEndian(word);
        int expectedDims = expectedMagic & 0xFF;
        if (magic != expectedMagic)
        {
            string kind = magic == ImageMagic ? " (an IDX image file)" : magic == LabelMagic ? " (an IDX label file)" : "";
            throw new DataException(path, $"magic number {magic} (0x{magic:X8}){kind} is not an IDX {what} file (expected {expectedMagic}, 0x{expectedMagic:X8})");
        }
        var dims = new long[expectedDims];
        long items = 1;
        for (int i = 0; i < expectedDims; i++)
        {
            ReadExact(path, stream, word, $"the size of dimension {i}");
            int d = BinaryPrimitives.ReadInt32BigEndian(word);
            if (d <= 0) throw new DataException(path, $"dimension {i} has size {d}; IDX {what} sizes must be positive");
            dims[i] = d;
            if (items > long.MaxValue / d)
                throw new DataException(path, $"dimension sizes [{string.Join(", ", dims.Take(i + 1))}, …] declare more {what} bytes than any file holds");
            items *= d;
        }
        long header = 4 + 4L * expectedDims;
        // Raw files: the length is known up front, so a truncated or padded file fails before any allocation.
        // Gzipped files: the body is read in bounded chunks and checked as it arrives (see ReadBody).
        if (!IsGzip(stream))
        {
            long body = stream.Length - header;
            if (body < items)
                throw new DataException(path, $"is truncated: the header declares [{string.Join(", ", dims)}] = {items:N0} bytes of {what} data but only {body:N0} follow");
            if (body > items)
                throw new DataException(path, $"has {body - items:N0} bytes after the {items:N0} declared by its header [{string.Join(", ", dims)}]");
        }
        else if (items > fileLength * MaxDeflateRatio)
        {
            throw new DataException(path, $"is truncated: the header declares [{string.Join(", ", dims)}] = {items:N0} bytes of {what} data, more than {fileLength:N0} gzipped bytes can expand to");
        }
        return dims;
    }

    /// <summary>Fills <paramref name="target"/> from the stream and checks that nothing follows.</summary>
    private static void ReadBody(string path, Stream stream, Span<byte> target, string what)
    {
        int total = target.Length;
        int done = 0;
        while (done < total)
        {
            int got = Read(path, stream, target[done..Math.Min(total, done + (1 << 20))]);
            if (got == 0)
                throw new DataException(path, $"is truncated: the header declares {total:N0} bytes of {what} data but only {done:N0} follow");
            done += got;
        }
        Span<byte> probe = stackalloc byte[1];
        if (Read(path, stream, probe) != 0)
            throw new DataException(path, $"has bytes after the {total:N0} declared by its header");
    }

    private static int Read(string path, Stream stream, Span<byte> buffer)
    {
        try
        {
            return stream.Read(buffer);
        }
        catch (InvalidDataException e)
        {
            throw new DataException(path, $"is not valid gzip data: {e.Message}");
        }
    }

    private static void ReadExact(string path, Stream stream, Span<byte> buffer, string what)
    {
        try
        {
            stream.ReadExactly(buffer);
        }
        catch (EndOfStreamException)
        {
            throw new DataException(path, $"is truncated: the file ends before {what}");
        }
        catch (InvalidDataException e)
        {
            throw new DataException(path, $"is not valid gzip data: {e.Message}");
        }
    }
}
