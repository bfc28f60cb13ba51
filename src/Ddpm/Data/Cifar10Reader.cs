using Ddpm.Configuration;
using static TorchSharp.torch;

namespace Ddpm.Data;

/// <summary>
/// Reads the CIFAR-10 binary version (<c>cifar-10-binary.tar.gz</c>, unpacked): files of 3,073-byte records, each one
/// label byte (0..9) followed by a 32×32 RGB image as three 1,024-byte planes (R, G, B), i.e. already [C, H, W].
/// Training = <c>data_batch_1.bin</c> … <c>data_batch_5.bin</c> (50,000 images), test = <c>test_batch.bin</c> (10,000).
/// </summary>
internal static class Cifar10Reader
{
    /// <summary>Image side in pixels.</summary>
    public const int Size = 32;
    /// <summary>Bytes per record: 1 label + 3 × 32 × 32 pixels.</summary>
    public const int RecordLength = 1 + 3 * Size * Size;
    /// <summary>The largest label (10 classes).</summary>
    public const int MaxLabel = 9;

    /// <summary>
    /// The batch files of <paramref name="split"/> under <paramref name="root"/>, or under its
    /// <c>cifar-10-batches-bin/</c> subfolder (the archive's own folder) when the files are not directly in root.
    /// </summary>
    public static IReadOnlyList<string> BatchFiles(string root, DatasetSplit split)
    {
        if (!Directory.Exists(root)) throw new DataException(root, "CIFAR-10 folder does not exist");
        string[] names = split == DatasetSplit.Train
            ? [.. Enumerable.Range(1, 5).Select(i => $"data_batch_{i}.bin")]
            : ["test_batch.bin"];
        foreach (var dir in new[] { root, Path.Combine(root, "cifar-10-batches-bin") })
        {
            var paths = names.Select(n => Path.Combine(dir, n)).ToList();
            if (paths.All(File.Exists)) return paths;
            if (paths.Any(File.Exists))
                throw new DataException(paths.First(p => !File.Exists(p)), $"is missing (CIFAR-10 {split.ToString().ToLowerInvariant()} needs {string.Join(", ", names)})");
        }
        throw new DataException(root, $"holds no CIFAR-10 {split.ToString().ToLowerInvariant()} files ({string.Join(", ", names)}, directly or in cifar-10-batches-bin/)");
    }

    /// <summary>Reads <paramref name="split"/> of the CIFAR-10 set under <paramref name="root"/> as images [N, 3, 32,
    /// 32] with labels.</summary>
    public static ImageDataset Read(string root, DatasetSplit split = DatasetSplit.Train) =>
        ReadFiles(BatchFiles(root, split), $"CIFAR-10 {split.ToString().ToLowerInvariant()} ({root})");

    /// <summary>Reads and concatenates the given batch files in order.</summary>
    public static ImageDataset ReadFiles(IReadOnlyList<string> files, string? description = null)
    {
        if (files.Count == 0) throw new ArgumentException("no CIFAR-10 batch files given", nameof(files));
        long count = 0;
        foreach (var f in files)
        {
            if (IO.PathCheck.FileProblem(f) is { } problem) throw new DataException(f, problem);
            long length = new FileInfo(f).Length;
            if (length == 0 || length % RecordLength != 0)
                throw new DataException(f, $"length {length:N0} is not a positive multiple of the {RecordLength:N0}-byte CIFAR-10 record (1 label + 3×32×32 pixels)");
            count += length / RecordLength;
        }
        var images = ByteTensor.Empty([count, 3, Size, Size], files[0]);
        try
        {
            var labels = new long[count];
            var record = new byte[RecordLength];
            long n = 0;
            foreach (var f in files)
            {
                using var stream = new FileStream(f, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 20);
                long inFile = stream.Length / RecordLength;
                var pixels = ByteTensor.Span(images);
                for (long r = 0; r < inFile; r++, n++)
                {
                    stream.ReadExactly(record);
                    if (record[0] > MaxLabel)
                        throw new DataException(f, $"record {r} has label {record[0]}, outside the classes 0..{MaxLabel}");
                    labels[n] = record[0];
                    record.AsSpan(1).CopyTo(pixels.Slice((int)(n * (RecordLength - 1)), RecordLength - 1));
                }
            }
            using var labelTensor = tensor(labels, ScalarType.Int64);
            return new ImageDataset(images, labelTensor, description ?? $"CIFAR-10 {string.Join(", ", files)}");
        }
        catch
        {
            images.Dispose();
            throw;
        }
    }
}
