using System.IO.Compression;
using Ddpm.Cli;

namespace Ddpm.Tests.Reliability;

/// <summary><c>ddpm train --max-steps k</c>, then <c>--resume --max-steps N</c>, equals <c>--max-steps N</c> straight,
/// bit for bit (CPU).</summary>
[Collection(GlobalRngCollection.Name)]
public class ExactResumeCliTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("resume-cli");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Trait(TestCategory.Name, TestCategory.Slow)]
    [Fact]
    public void Training_in_two_cli_runs_with_resume_gives_the_same_weights_and_optimizer_state_as_one_run()
    {
        var config = Path.Combine(_dir, "tiny.yaml");
        File.WriteAllText(config, TinyCli.Yaml(batchSize: 8, extraTrain: "  ema_decay: 0.9\n"));
        // 512 images / batch 8 = 64 steps per epoch: k = 5 stops mid-epoch, N = 70 crosses an epoch boundary.
        var straight = Path.Combine(_dir, "straight");
        var split = Path.Combine(_dir, "split");
        Assert.Equal(0, Cli("train", "--config", config, "--out", straight, "--max-steps", "70", "--device", "cpu"));
        Assert.Equal(0, Cli("train", "--config", config, "--out", split, "--max-steps", "5", "--device", "cpu"));
        Assert.Equal(0, Cli("train", "--config", config, "--out", split, "--max-steps", "70", "--device", "cpu", "--resume"));

        var a = Entries(Path.Combine(straight, "checkpoint.ckpt"));
        var b = Entries(Path.Combine(split, "checkpoint.ckpt"));
        foreach (var name in new[] { "model.safetensors", "ema.safetensors", "optimizer.bin", "rng.bin" })
        {
            Assert.True(a.ContainsKey(name), name);
            Assert.True(a[name].AsSpan().SequenceEqual(b[name]), $"{name} differs between the straight and the resumed run");
        }
    }

    /// <summary>Every entry of a checkpoint zip, by name (also the mpirun resume test's).</summary>
    internal static Dictionary<string, byte[]> Entries(string path)
    {
        using var zip = ZipFile.OpenRead(path);
        return zip.Entries.ToDictionary(e => e.FullName, e =>
        {
            using var s = e.Open();
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            return ms.ToArray();
        });
    }

    private static int Cli(params string[] args) => TinyCli.Run(args);
}
