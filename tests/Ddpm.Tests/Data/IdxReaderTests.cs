using Xunit;
using Ddpm.Data;
using static TorchSharp.torch;

namespace Ddpm.Tests.Data;

public sealed class IdxReaderTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private string Write(string name, byte[] bytes)
    {
        var path = _dir.File(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    [Fact]
    public void Images_and_labels_round_trip_to_uint8_NCHW_and_int64()
    {
        var images = Write("img", IdxBytes.Images(3, 2, 4, i => (byte)(i * 10 % 256)));
        var labels = Write("lbl", IdxBytes.Labels(7, 0, 9));

        using var set = IdxReader.Read(images, labels);

        Assert.Equal([3L, 1, 2, 4], set.Images.shape);
        Assert.Equal(ScalarType.Byte, set.Images.dtype);
        Assert.Equal(Enumerable.Range(0, 24).Select(i => (byte)(i * 10 % 256)), set.Images.data<byte>().ToArray());
        Assert.Equal(ScalarType.Int64, set.Labels!.dtype);
        Assert.Equal([7L, 0, 9], set.Labels.data<long>().ToArray());
        Assert.Equal(3, set.Count);
    }

    [Fact]
    public void Batch_scales_0_to_minus_1_and_255_to_plus_1()
    {
        var images = Write("img", IdxBytes.Images(2, 1, 3, i => new byte[] { 0, 255, 51, 255, 0, 102 }[i]));
        using var set = IdxReader.Read(images);
        using var indices = tensor(new long[] { 1, 0 });

        using var batch = set.Batch(indices);

        Assert.Equal(ScalarType.Float32, batch.dtype);
        Assert.Equal([2L, 1, 1, 3], batch.shape);
        var v = batch.data<float>().ToArray();
        float[] expected = [1f, -1f, 102 / 127.5f - 1, -1f, 1f, 51 / 127.5f - 1];
        for (int i = 0; i < v.Length; i++) Assert.Equal(expected[i], v[i], 6);
        Assert.Null(set.Labels);
    }

    [Fact]
    public void Gzipped_files_read_the_same_as_raw_ones()
    {
        var raw = IdxBytes.Images(5, 3, 3, i => (byte)(255 - i));
        var images = Write("img.gz", IdxBytes.Gzip(raw));
        var labels = Write("lbl.gz", IdxBytes.Gzip(IdxBytes.Labels(1, 2, 3, 4, 5)));

        using var set = IdxReader.Read(images, labels);

        Assert.Equal([5L, 1, 3, 3], set.Images.shape);
        Assert.Equal(raw[16..], set.Images.data<byte>().ToArray());
        Assert.Equal([1L, 2, 3, 4, 5], set.Labels!.data<long>().ToArray());
    }

    [Fact]
    public void A_label_file_given_as_images_is_rejected_by_its_magic_number()
    {
        var path = Write("train-labels", IdxBytes.Labels(1, 2));

        var e = Assert.Throws<DataException>(() => IdxReader.ReadImages(path));

        Assert.Equal(path, e.Path);
        Assert.Contains("magic number 2049", e.Message);
        Assert.Contains("expected 2051", e.Message);
    }

    [Fact]
    public void An_unknown_magic_number_is_rejected()
    {
        var path = Write("junk", IdxBytes.Images(1, 2, 2, _ => 0, magic: 0x12345678));

        var e = Assert.Throws<DataException>(() => IdxReader.ReadImages(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("magic number 305419896", e.Message);
    }

    [Fact]
    public void A_truncated_raw_file_is_rejected_before_allocating_the_declared_size()
    {
        var full = IdxBytes.Images(60000, 28, 28, _ => 1);
        var path = Write("truncated", full[..(16 + 100)]);

        var e = Assert.Throws<DataException>(() => IdxReader.ReadImages(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("truncated", e.Message);
        Assert.Contains("47,040,000", e.Message);
        Assert.Contains("only 100 follow", e.Message);
    }

    [Fact]
    public void A_truncated_gzipped_file_is_rejected()
    {
        var raw = IdxBytes.Images(10, 8, 8, i => (byte)i);
        var path = Write("truncated.gz", IdxBytes.Gzip(raw[..300]));

        var e = Assert.Throws<DataException>(() => IdxReader.ReadImages(path));

        Assert.Contains(path, e.Message);
        Assert.Contains("truncated", e.Message);
        Assert.Contains("only 284 follow", e.Message);
    }

    [Fact]
    public void A_gzipped_header_declaring_more_than_deflate_can_hold_is_rejected_before_allocating()
    {
        // Declares 2^31 − 1 images of 255×255: far more than a few hundred gzipped bytes can expand to.
        var header = IdxBytes.Images(0, 255, 255, _ => 0);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32BigEndian(header.AsSpan(4), int.MaxValue);
        var path = Write("huge.gz", IdxBytes.Gzip(header));

        var e = Assert.Throws<DataException>(() => IdxReader.ReadImages(path));

        Assert.Contains("more than", e.Message);
        Assert.Contains("gzipped bytes can expand to", e.Message);
    }

    [Fact]
    public void A_header_with_a_zero_dimension_is_rejected()
    {
        var path = Write("zero", IdxBytes.Images(3, 0, 28, _ => 0));

        var e = Assert.Throws<DataException>(() => IdxReader.ReadImages(path));

        Assert.Contains("dimension 1 has size 0", e.Message);
    }

    [Fact]
    public void Trailing_bytes_after_the_declared_data_are_rejected()
    {
        var path = Write("padded", [.. IdxBytes.Images(2, 2, 2, _ => 3), 9, 9]);

        var e = Assert.Throws<DataException>(() => IdxReader.ReadImages(path));

        Assert.Contains("2 bytes after the 8 declared", e.Message);
    }

    [Fact]
    public void Image_and_label_counts_must_agree()
    {
        var images = Write("img", IdxBytes.Images(3, 2, 2, _ => 0));
        var labels = Write("lbl", IdxBytes.Labels(1, 2));

        var e = Assert.Throws<DataException>(() => IdxReader.Read(images, labels));

        Assert.Equal(labels, e.Path);
        Assert.Contains("holds 2 labels", e.Message);
        Assert.Contains("holds 3 images", e.Message);
    }

    [Fact]
    public void Labels_outside_0_to_9_are_rejected_with_their_index()
    {
        var labels = Write("lbl", IdxBytes.Labels(3, 9, 10, 1));

        var e = Assert.Throws<DataException>(() => IdxReader.ReadLabels(labels));

        Assert.Equal(labels, e.Path);
        Assert.Contains("label 2 is 10, outside the classes 0..9", e.Message);
    }

    [Fact]
    public void The_largest_class_is_configurable()
    {
        var labels = Write("lbl", IdxBytes.Labels(3, 25));

        using var read = IdxReader.ReadLabels(labels, maxLabel: 25);

        Assert.Equal([3L, 25], read.data<long>().ToArray());
        Assert.Throws<DataException>(() => IdxReader.ReadLabels(labels, maxLabel: 24));
    }

    [Fact]
    public void A_missing_file_is_named()
    {
        var path = _dir.File("nope");

        var e = Assert.Throws<DataException>(() => IdxReader.ReadImages(path));

        Assert.Equal(path, e.Path);
        Assert.Contains("does not exist", e.Message);
    }
}
