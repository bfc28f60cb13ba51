using Ddpm.Tests.Data;
using Ddpm.Tests.Reliability;

namespace Ddpm.Tests.Cli;

/// <summary>
/// The CLI short of file descriptors (issue 25): below the limit it needs, any command says so in one line.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Process)]
public sealed class CliDescriptorLimitTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(2);
    private readonly TempFolder _tmp = new();

    public void Dispose() => _tmp.Dispose();

    internal static void AssertOneLine(string stderr, string contains)
    {
        var lines = stderr.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.True(lines.Length == 1, $"expected one line, got:\n{stderr}");
        Assert.StartsWith("error: ", lines[0]);
        Assert.Contains(contains, lines[0]);
    }

    [Fact]
    public void Below_the_limit_it_needs_every_command_says_so_in_one_line()
    {
        var config = _tmp.File("tiny.yaml");
        File.WriteAllText(config, TinyCheckpoint.Yaml);
        var checkpoint = TinyCheckpoint.Write(_tmp.File("tiny.ckpt"));
        foreach (var (limit, args) in new (int, string[])[]
                 {
                     (64, ["info", "--config", config]),
                     (64, ["sample", "--checkpoint", checkpoint, "--out", _tmp.File("samples"), "--num", "1", "--device", "cpu"]),
                     (200, ["train", "--config", config, "--out", _tmp.File("run"), "--max-steps", "1", "--device", "cpu"]),
                 })
        {
            using var run = ChildProcess.StartLimited(limit, ChildProcess.CliDll, args);
            Assert.Equal(1, run.WaitForExit(Limit));
            AssertOneLine(run.Stderr, $"the open-file limit is {limit} (ulimit -n) and ddpm needs at least 256");
        }
        Assert.False(Directory.Exists(_tmp.File("samples")));
        Assert.False(Directory.Exists(_tmp.File("run")));
    }
}
