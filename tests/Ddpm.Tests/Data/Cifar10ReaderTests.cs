using Ddpm.Configuration;
using Ddpm.Data;
using Xunit;

namespace Ddpm.Tests.Data;

public sealed class Cifar10ReaderTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>A record with label <paramref name="label"/>, R plane = label, G plane = pixel index mod 256, B plane =
    /// 200.</summary>
    private static byte[] Record(byte label)
    {
        var r = new byte[Cifar10Reader.RecordLength];
        r[0] = label;
        for (int i = 0; i < 1024; i++)
        {
            r[1 + i] = label;
            r[1 + 1024 + i] = (byte)i;
            r[1 + 2048 + i] = 200;
        }
        return r;
    }

    private string WriteBatch(string relative, params byte[] labels)
    {
        var path = _dir.File(relative);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllBytes(path, labels.SelectMany(Record).ToArray());
        return path;
    }

    [Fact]
    public void Records_parse_into_label_and_CHW_planes_across_the_five_training_batches()
    {
        for (int i = 1; i <= 5; i++) WriteBatch($"cifar-10-batches-bin/data_batch_{i}.bin", (byte)(i - 1), (byte)(i + 4));
        WriteBatch("cifar-10-batches-bin/test_batch.bin", 3);

        using var train = Cifar10Reader.Read(_dir.Path, DatasetSplit.Train);
        using var test = Cifar10Reader.Read(_dir.Path, DatasetSplit.Test);

        Assert.Equal([10L, 3, 32, 32], train.Images.shape);
        Assert.Equal([0L, 5, 1, 6, 2, 7, 3, 8, 4, 9], train.Labels!.data<long>().ToArray());
        using var seventh = train.Images[7];
        var pixels = seventh.contiguous().data<byte>().ToArray();
        Assert.All(pixels[..1024], p => Assert.Equal(8, p));
        Assert.Equal(Enumerable.Range(0, 1024).Select(i => (byte)i), pixels[1024..2048]);
        Assert.All(pixels[2048..], p => Assert.Equal(200, p));
        Assert.Equal([1L, 3, 32, 32], test.Images.shape);
        Assert.Equal(3L, test.Labels![0].item<long>());
    }

    [Fact]
    public void A_file_that_is_not_a_whole_number_of_records_is_rejected()
    {
        var path = WriteBatch("test_batch.bin", 1, 2);
        File.AppendAllText(path, "x");

        var e = Assert.Throws<DataException>(() => Cifar10Reader.Read(_dir.Path, DatasetSplit.Test));

        Assert.Equal(path, e.Path);
        Assert.Contains("length 6,147 is not a positive multiple of the 3,073-byte CIFAR-10 record", e.Message);
    }

    [Fact]
    public void A_label_outside_0_to_9_is_rejected_with_its_record()
    {
        var path = WriteBatch("test_batch.bin", 1, 10);

        var e = Assert.Throws<DataException>(() => Cifar10Reader.Read(_dir.Path, DatasetSplit.Test));

        Assert.Equal(path, e.Path);
        Assert.Contains("record 1 has label 10", e.Message);
    }

    [Fact]
    public void A_missing_training_batch_is_named()
    {
        for (int i = 1; i <= 4; i++) WriteBatch($"data_batch_{i}.bin", 1);

        var e = Assert.Throws<DataException>(() => Cifar10Reader.Read(_dir.Path, DatasetSplit.Train));

        Assert.Equal(_dir.File("data_batch_5.bin"), e.Path);
        Assert.Contains("is missing", e.Message);
    }
}
