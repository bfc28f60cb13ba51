using Ddpm.Data;
using SkiaSharp;
using Xunit;
using static TorchSharp.torch;

namespace Ddpm.Tests.Data;

public sealed class ImageFolderReaderTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private byte[] Pixels(Tensor images, long index)
    {
        using var one = images[index];
        return one.contiguous().data<byte>().ToArray();
    }

    [Fact]
    public void Label_folders_with_PNG_and_JPEG_read_as_grayscale_resized_and_centre_cropped()
    {
        TestImages.Solid(_dir.File("0/a.png"), 28, 28, new SKColor(255, 0, 0));
        TestImages.Solid(_dir.File("0/b.jpg"), 28, 28, new SKColor(128, 128, 128));
        // 56×40: the centre 40×40 is white, the 8-pixel bands left and right are red and must be cropped away.
        TestImages.Write(_dir.File("1/c.png"), 56, 40, (x, _) => x is >= 8 and < 48 ? SKColors.White : new SKColor(255, 0, 0));

        using var set = ImageFolderReader.Read(_dir.Path, channels: 1, size: 28);

        Assert.Equal([3L, 1, 28, 28], set.Images.shape);
        Assert.Equal([0L, 0, 1], set.Labels!.data<long>().ToArray());
        // PIL's luma of pure red: (19595·255 + 2^15) >> 16 = 76.
        Assert.All(Pixels(set.Images, 0), p => Assert.Equal(76, p));
        Assert.All(Pixels(set.Images, 1), p => Assert.InRange(p, 126, 130));
        Assert.All(Pixels(set.Images, 2), p => Assert.Equal(255, p));
    }

    [Fact]
    public void RGB_images_keep_their_channel_planes_and_grayscale_images_are_replicated_to_RGB()
    {
        TestImages.Solid(_dir.File("3/red.png"), 16, 16, new SKColor(250, 20, 5));
        TestImages.Solid(_dir.File("12/gray.png"), 16, 16, new SKColor(90, 90, 90));

        using var set = ImageFolderReader.Read(_dir.Path, channels: 3, size: 8);

        Assert.Equal([2L, 3, 8, 8], set.Images.shape);
        Assert.Equal([3L, 12], set.Labels!.data<long>().ToArray());
        var red = Pixels(set.Images, 0);
        Assert.All(red[..64], p => Assert.Equal(250, p));
        Assert.All(red[64..128], p => Assert.Equal(20, p));
        Assert.All(red[128..], p => Assert.Equal(5, p));
        Assert.All(Pixels(set.Images, 1), p => Assert.Equal(90, p));
    }

    [Fact]
    public void A_flat_folder_reads_without_labels_in_name_order()
    {
        TestImages.Solid(_dir.File("b.png"), 4, 4, new SKColor(10, 10, 10));
        TestImages.Solid(_dir.File("a.png"), 4, 4, new SKColor(200, 200, 200));
        File.WriteAllText(_dir.File(".DS_Store"), "hidden files are skipped");

        using var set = ImageFolderReader.Read(_dir.Path, channels: 1, size: 4);

        Assert.Null(set.Labels);
        Assert.Equal(2, set.Count);
        Assert.Equal(200, Pixels(set.Images, 0)[0]);
        Assert.Equal(10, Pixels(set.Images, 1)[0]);
    }

    [Fact]
    public void A_non_image_file_is_named()
    {
        TestImages.Solid(_dir.File("0/a.png"), 4, 4, SKColors.Black);
        File.WriteAllText(_dir.File("0/notes.txt"), "not a picture");

        var e = Assert.Throws<DataException>(() => ImageFolderReader.Read(_dir.Path, 1, 4));

        Assert.Equal(_dir.File("0/notes.txt"), e.Path);
        Assert.Contains("is not an image file", e.Message);
    }

    [Fact]
    public void An_undecodable_image_is_named()
    {
        TestImages.Solid(_dir.File("0/good.png"), 4, 4, SKColors.Black);
        File.WriteAllText(_dir.File("0/broken.png"), "this is text, not PNG data");

        var e = Assert.Throws<DataException>(() => ImageFolderReader.Read(_dir.Path, 1, 4));

        Assert.Equal(_dir.File("0/broken.png"), e.Path);
        Assert.Contains("cannot be decoded as an image", e.Message);
    }

    [Fact]
    public void An_empty_file_or_a_fifo_is_named_as_such_not_as_an_unimplemented_codec()
    {
        TestImages.Solid(_dir.File("0/good.png"), 4, 4, SKColors.Black);
        File.WriteAllBytes(_dir.File("0/empty.png"), []);
        var e = Assert.Throws<DataException>(() => ImageFolderReader.Read(_dir.Path, 1, 4));
        Assert.Equal(_dir.File("0/empty.png"), e.Path);
        Assert.Contains("is empty (0 bytes), not an image", e.Message);
        Assert.DoesNotContain("Unimplemented", e.Message);

        File.Delete(_dir.File("0/empty.png"));
        File.WriteAllText(_dir.File("0/text.png"), "this is text, not PNG data");
        Assert.Contains("not PNG, JPEG, BMP, GIF or WebP data", Assert.Throws<DataException>(() => ImageFolderReader.Read(_dir.Path, 1, 4)).Message);

        File.Delete(_dir.File("0/text.png"));
        var fifo = Reliability.Fifo.Make(_dir.File("0/pipe.png"));
        try { Assert.Contains("is a FIFO (named pipe)", Assert.Throws<DataException>(() => ImageFolderReader.Read(_dir.Path, 1, 4)).Message); }
        finally { Reliability.Fifo.Release(fifo); }
    }

    [Fact]
    public void A_truncated_PNG_is_named()
    {
        TestImages.Write(_dir.File("cut.png"), 64, 64, (x, y) => new SKColor((byte)(x * 4), (byte)(y * 4), (byte)(x ^ y)));
        var bytes = File.ReadAllBytes(_dir.File("cut.png"));
        File.WriteAllBytes(_dir.File("cut.png"), bytes[..(bytes.Length / 2)]);

        var e = Assert.Throws<DataException>(() => ImageFolderReader.Read(_dir.Path, 1, 64));

        Assert.Equal(_dir.File("cut.png"), e.Path);
        Assert.Contains("cannot be decoded", e.Message);
    }

    [Fact]
    public void An_empty_folder_is_an_error()
    {
        var e = Assert.Throws<DataException>(() => ImageFolderReader.Read(_dir.Path, 1, 28));

        Assert.Equal(_dir.Path, e.Path);
        Assert.Contains("image folder is empty", e.Message);
    }

    [Fact]
    public void Empty_label_folders_are_an_error()
    {
        Directory.CreateDirectory(_dir.File("0"));

        var e = Assert.Throws<DataException>(() => ImageFolderReader.Read(_dir.Path, 1, 28));

        Assert.Contains("label subfolders hold no images", e.Message);
    }

    [Fact]
    public void A_label_folder_that_is_not_an_integer_is_named()
    {
        TestImages.Solid(_dir.File("cats/a.png"), 4, 4, SKColors.Black);

        var e = Assert.Throws<DataException>(() => ImageFolderReader.Read(_dir.Path, 1, 4));

        Assert.Equal(_dir.File("cats"), e.Path);
        Assert.Contains("'cats' is not a non-negative integer class label", e.Message);
    }

    [Fact]
    public void A_missing_folder_is_named()
    {
        var missing = _dir.File("nothing-here");

        var e = Assert.Throws<DataException>(() => ImageFolderReader.Read(missing, 1, 28));

        Assert.Equal(missing, e.Path);
        Assert.Contains("does not exist", e.Message);
    }

    [Fact]
    public void Random_flip_mirrors_about_half_the_images_reproducibly()
    {
        // One 1×4 image [0, 85, 170, 255] stored 64 times: each batch row is it or its mirror.
        using var images = tensor(new byte[] { 0, 85, 170, 255 }, ScalarType.Byte).view(1, 1, 1, 4);
        using var set = new ImageDataset(images.expand(64, 1, 1, 4).contiguous(), null, "ramp");
        using var indices = arange(64, ScalarType.Int64);

        using var g1 = new Generator(42);
        using var a = set.Batch(indices, null, g1);
        using var g2 = new Generator(42);
        using var b = set.Batch(indices, null, g2);
        using var plain = set.Batch(indices, null, null);

        Assert.Equal(a.data<float>().ToArray(), b.data<float>().ToArray());
        var first = a.select(3, 0).flatten().data<float>().ToArray();
        Assert.All(first, v => Assert.True(v == -1f || v == 1f));
        int flipped = first.Count(v => v == 1f);
        Assert.InRange(flipped, 16, 48);
        Assert.All(plain.select(3, 0).flatten().data<float>().ToArray(), v => Assert.Equal(-1f, v));
    }
}
