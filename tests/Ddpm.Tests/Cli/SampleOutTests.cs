using Ddpm.Runs;
using Ddpm.Tests.Data;
using Ddpm.Tests.Reliability;

namespace Ddpm.Tests.Cli;

/// <summary>
/// <c>ddpm sample</c>'s <c>--out</c> (issue 25): a generation owns the folder while it runs, so a second one is refused
/// rather than mixing or deleting its files; a write that fails says what the folder holds.
/// </summary>
public sealed class SampleOutTests : IDisposable
{
    private readonly TempFolder _tmp = new();

    public void Dispose() => _tmp.Dispose();

    private static string[] Sample(string checkpoint, string outDir, params string[] extra) =>
        ["sample", "--checkpoint", checkpoint, "--out", outDir, "--frames", "0", "--device", "cpu", .. extra];

    [Fact]
    public void A_sample_into_a_folder_another_live_sample_owns_is_refused_and_its_files_are_kept()
    {
        var checkpoint = TinyCheckpoint.Write(_tmp.File("tiny.ckpt"));
        var outDir = _tmp.File("out");
        Directory.CreateDirectory(outDir);
        File.WriteAllText(Path.Combine(outDir, "x_0010.png"), "the live sample's");
        using (RunLock.Acquire(outDir, SampleFolder.LockFile, "sample")) // this process, alive: the lock is live
        {
            var (code, stderr) = TinyCli.RunCapturingStderr(Sample(checkpoint, outDir, "--num", "1"));
            Assert.Equal(1, code);
            Assert.Contains($"{outDir} is in use by another sample (PID {Environment.ProcessId}", stderr);
            Assert.Equal("the live sample's", File.ReadAllText(Path.Combine(outDir, "x_0010.png")));
            Assert.False(File.Exists(Path.Combine(outDir, SampleFolder.GridFile)));
        }
        // Released: the next sample takes the folder, clears the earlier grid and gives the folder up when done.
        var (again, err) = TinyCli.RunCapturingStderr(Sample(checkpoint, outDir, "--num", "1"));
        Assert.True(again == 0, err);
        Assert.Equal(["samples.png"], Directory.GetFiles(outDir).Select(Path.GetFileName).Order());
    }

    [Fact]
    [Trait(TestCategory.Name, TestCategory.Process)]
    public void Two_sample_processes_into_one_out_do_not_mix_their_files()
    {
        var checkpoint = TinyCheckpoint.Write(_tmp.File("long.ckpt"), timesteps: 200);
        var outDir = _tmp.File("out");
        // The first: 200 DDPM steps, an intermediate grid every 50. Stopped once its first grid is there, so that the
        // second surely runs while it does.
        using var first = ChildProcess.Start(ChildProcess.CliDll, Sample(checkpoint, outDir, "--num", "2", "--sampler", "ddpm", "--save-every", "50"));
        first.WaitUntil(() => File.Exists(Path.Combine(outDir, "x_0150.png")), TimeSpan.FromMinutes(2), "the first sample's first grid");
        ChildProcess.Signal(first.Process, ChildProcess.Sigstop);
        try
        {
            using var second = ChildProcess.Start(ChildProcess.CliDll, Sample(checkpoint, outDir, "--num", "1", "--sampler", "ddim", "--steps", "2"));
            Assert.Equal(1, second.WaitForExit(TimeSpan.FromMinutes(2)));
            Assert.Contains("is in use by another sample", second.Stderr);
            Assert.True(File.Exists(Path.Combine(outDir, "x_0150.png")), "the second deleted the first's grid");
        }
        finally { ChildProcess.Signal(first.Process, ChildProcess.Sigcont); }
        Assert.True(first.WaitForExit(TimeSpan.FromMinutes(2)) == 0, first.Stderr);
        Assert.Equal(["samples.png", "x_0050.png", "x_0100.png", "x_0150.png"], Directory.GetFiles(outDir).Select(Path.GetFileName).Order());
    }

    [Fact]
    public void A_grid_that_cannot_be_written_says_what_out_holds_and_leaves_no_temporary_or_lock()
    {
        var checkpoint = TinyCheckpoint.Write(_tmp.File("tiny.ckpt"));
        var outDir = _tmp.File("out");
        Directory.CreateDirectory(Path.Combine(outDir, SampleFolder.GridFile)); // a folder where the grid goes: its write fails
        var (code, stderr) = TinyCli.RunCapturingStderr(Sample(checkpoint, outDir, "--num", "1", "--sampler", "ddpm", "--save-every", "5"));
        Assert.Equal(1, code);
        Assert.Contains($"error: writing samples.png into '{outDir}' failed (", stderr);
        Assert.Contains($"'{outDir}' holds only this run's 3 intermediate grid(s) x_*.png", stderr);
        Assert.DoesNotContain("   at ", stderr);
        Assert.Equal(["x_0005.png", "x_0010.png", "x_0015.png"], Directory.GetFiles(outDir).Select(Path.GetFileName).Order());
    }
}
