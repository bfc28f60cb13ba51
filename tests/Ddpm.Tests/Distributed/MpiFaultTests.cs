using System.Diagnostics;
using Ddpm.Tests.Data;
using Ddpm.Tests.Reliability;
using SkiaSharp;

namespace Ddpm.Tests.Distributed;

/// <summary>
/// mpirun jobs whose ranks go wrong without dying (issue 25): ranks that see different data stop at start naming the
/// rank, and a stopped rank is named and the job ended once a collective passes its deadline.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Process)]
public sealed class MpiFaultTests : IDisposable
{
    private static readonly TimeSpan Limit = TimeSpan.FromMinutes(3);
    private readonly string _dir = TestPaths.TempDir("mpi-faults");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>
    /// A rank's working folder: <c>folder.yaml</c> (8×8 grayscale from <c>imgs/</c>) and <paramref name="count"/>
    /// images there.
    /// </summary>
    private string RankFolder(string name, int count, int pattern)
    {
        var folder = Path.Combine(_dir, name);
        for (int i = 0; i < count; i++)
            TestImages.Write(Path.Combine(folder, "imgs", $"{i:D4}.png"), 8, 8, (x, y) => (x * 7 + y * 3 + i * pattern) % 5 == 0 ? SKColors.White : SKColors.Black);
        File.WriteAllText(Path.Combine(folder, "folder.yaml"), TinyCli.Yaml(batchSize: 8).Replace("  name: synthetic", "  name: folder\n  im_path: imgs"));
        return folder;
    }

    private static string[] Train(string outDir) => ["train", "--config", "folder.yaml", "--out", outDir, "--max-steps", "4", "--device", "cpu"];

    [MpiFact]
    public void Ranks_that_load_different_data_stop_at_start_and_name_the_rank()
    {
        // 64 images against 200: on main the ranks ran different numbers of steps per epoch and deadlocked.
        string a = RankFolder("a", 64, 1), b = RankFolder("b", 200, 1);
        using (var run = Mpirun.StartApps([], (a, Train("out")), (b, Train("out"))))
        {
            Assert.NotEqual(0, run.WaitForExit(Limit));
            Assert.Contains("rank 1 differs from rank 0 in the number of training images (rank 0: 64, rank 1: 200)", run.Stderr);
        }
        Assert.False(Directory.Exists(Path.Combine(a, "out")), "rank 0 left a run behind");

        // The same number of other images: on main this trained to the end and reported identical weights.
        string c = RankFolder("c", 64, 2);
        using (var run = Mpirun.StartApps([], (a, Train("out")), (c, Train("out"))))
        {
            Assert.NotEqual(0, run.WaitForExit(Limit));
            Assert.Contains("rank 1 differs from rank 0 in a checksum of the training images", run.Stderr);
            Assert.DoesNotContain("bit-identical", run.Stderr);
        }
    }

    [MpiFact]
    public void A_stopped_rank_is_named_and_the_job_ended_after_the_deadline()
    {
        var config = Path.Combine(_dir, "tiny.yaml");
        File.WriteAllText(config, TinyCli.Yaml(batchSize: 8));
        using var run = Mpirun.Start(2, ["DDPM_MPI_TIMEOUT=5"], "train", "--config", config, "--out", Path.Combine(_dir, "run"), "--device", "cpu");
        run.WaitUntil(() => run.Stderr.Contains("epoch 1: mean loss"), Limit, "the first epoch");
        int rank1 = Mpirun.RankProcess(run.Process, 1) ?? throw new Xunit.Sdk.XunitException($"rank 1 not found\n{run.Stderr}");
        using var victim = Process.GetProcessById(rank1);
        ChildProcess.Signal(victim, ChildProcess.Sigstop); // alive, never answering: on main rank 0 spun at 99 % CPU forever
        try
        {
            var clock = Stopwatch.StartNew();
            Assert.NotEqual(0, run.WaitForExit(TimeSpan.FromSeconds(120)));
            Assert.True(clock.Elapsed < TimeSpan.FromSeconds(120));
            Assert.Matches(@"rank 0: error: no word from rank 1 for 5 s: the other ranks wait for it in MPI_\w+ \(collective \d+\)", run.Stderr);
        }
        finally
        {
            if (!victim.HasExited) victim.Kill();
        }
    }
}
