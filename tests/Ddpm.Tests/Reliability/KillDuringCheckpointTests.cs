using Ddpm.Runs;
using System.Diagnostics;
using Ddpm.Training;
using Xunit.Abstractions;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// SIGKILL at random moments of a process that does nothing but train one step and save a rotated checkpoint, over and
/// over (tests/Ddpm.KillTarget): after every kill the latest checkpoint must load completely (weights, EMA, Adam, RNG)
/// and the next process must resume from it. 20 kills by default, 300 with DDPM_LONG_TESTS=1.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Process)]
public class KillDuringCheckpointTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("kill");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void A_process_killed_at_random_moments_during_checkpoint_writes_always_leaves_a_loadable_latest_checkpoint()
    {
        int kills = ChildProcess.LongTests ? 300 : 20;
        const int keep = 2;
        var folder = new CheckpointFolder(_dir, keep);
        var rng = new Random(1234);
        var clock = Stopwatch.StartNew();
        long lastStep = 0;
        int midWrite = 0;
        for (int i = 0; i < kills; i++)
        {
            using (var child = ChildProcess.Start(ChildProcess.KillTargetDll, _dir, keep.ToString()))
            {
                child.WaitUntil(() => child.Stdout.Contains("ready"), TimeSpan.FromSeconds(60), "the first checkpoint");
                Thread.Sleep(rng.Next(0, 150));
                child.Process.Kill(); // SIGKILL
                child.WaitForExit(TimeSpan.FromSeconds(30));
            }
            if (Directory.GetFiles(_dir, "*.tmp-*").Length > 0) midWrite++;

            var manifest = Checkpoint.ReadManifest(folder.LatestPath);
            Assert.True(manifest.Step > lastStep, $"kill {i}: latest step {manifest.Step} did not advance past {lastStep}");
            lastStep = manifest.Step;
            using (var resumed = Trainer.Resume(folder.LatestPath, new TorchSharp.torch.Device("cpu")))
                Assert.Equal(manifest.Step, resumed.Step);
            var numbered = folder.Numbered();
            Assert.InRange(numbered.Count, 1, keep + 1); // + 1: killed between a save and its pruning
            foreach (var (step, path) in numbered) Assert.Equal(step, Checkpoint.ReadManifest(path).Step);
        }
        output.WriteLine($"{kills} SIGKILLs in {clock.Elapsed.TotalSeconds:F1} s; {midWrite} left a temporary file (killed inside a write); last step {lastStep}");
        Assert.True(Directory.GetFiles(_dir, "*.tmp-*").Length <= 2, "stale temporary files were not cleaned up by later runs");
    }
}
