using Ddpm.Runs;
using System.Diagnostics;
using System.IO.MemoryMappedFiles;
using Ddpm.IO;
using Ddpm.Training;
using Xunit.Abstractions;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// SIGKILL at random moments of a process that does nothing but train one step and save a rotated checkpoint, over and
/// over (tests/Ddpm.KillTarget): after every kill the latest checkpoint must load completely (weights, EMA, Adam, RNG)
/// and the next process must resume from it. 20 kills by default, 300 with DDPM_LONG_TESTS=1.
/// <para>Each kill comes after a random wait, then once the child is inside a save (its <c>kill-phase</c> byte), a
/// random 0-8 ms into it. Counted: kills that left the child inside a save (the byte still 1), and the stricter ones
/// that left its temporary file on disk (<c>….tmp-&lt;pid&gt;</c>: killed between creating and renaming a file). At
/// least 3/4 of the kills must land inside a save and 1/20 inside a file's write (measured: 19-20 and 6-7 of 20), or
/// the test would not test what it claims.</para>
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
        int midWrite = 0, inSave = 0;
        var phasePath = Path.Combine(_dir, "kill-phase");
        for (int i = 0; i < kills; i++)
        {
            int pid;
            using (var child = ChildProcess.Start(ChildProcess.KillTargetDll, _dir, keep.ToString()))
            {
                pid = child.Process.Id;
                child.WaitUntil(() => child.Stdout.Contains("ready"), TimeSpan.FromSeconds(60), "the first checkpoint");
                Thread.Sleep(rng.Next(0, 150));
                using (var phaseFile = MemoryMappedFile.CreateFromFile(phasePath, FileMode.Open, null, 1))
                using (var phase = phaseFile.CreateViewAccessor(0, 1))
                {
                    child.WaitUntil(() => phase.ReadByte(0) == 1, TimeSpan.FromSeconds(30), "a save");
                    var into = Stopwatch.StartNew();
                    double at = rng.NextDouble() * 8; // a save takes 5-10 ms here, its file write the last few
                    while (into.Elapsed.TotalMilliseconds < at) Thread.SpinWait(20);
                    child.Process.Kill(); // SIGKILL
                    child.WaitForExit(TimeSpan.FromSeconds(30));
                    if (phase.ReadByte(0) == 1) inSave++;
                }
            }
            // This process's own temporary file (an earlier one's may still be there until the next run cleans it).
            if (Directory.GetFiles(_dir, $"*{AtomicFile.TempMarker}{pid}").Length > 0) midWrite++;

            var manifest = Checkpoint.ReadManifest(folder.LatestPath);
            Assert.True(manifest.Step > lastStep, $"kill {i}: latest step {manifest.Step} did not advance past {lastStep}");
            lastStep = manifest.Step;
            using (var resumed = Trainer.Resume(folder.LatestPath, new TorchSharp.torch.Device("cpu")))
                Assert.Equal(manifest.Step, resumed.Step);
            var numbered = folder.Numbered();
            Assert.InRange(numbered.Count, 1, keep + 1); // + 1: killed between a save and its pruning
            foreach (var (step, path) in numbered) Assert.Equal(step, Checkpoint.ReadManifest(path).Step);
        }
        output.WriteLine($"{kills} SIGKILLs in {clock.Elapsed.TotalSeconds:F1} s; {inSave} inside a save, {midWrite} of them " +
            $"left a temporary file (killed inside a file's write); last step {lastStep}");
        Assert.True(4 * inSave >= 3 * kills, $"only {inSave} of {kills} kills landed inside a checkpoint save");
        Assert.True(20 * midWrite >= kills, $"only {midWrite} of {kills} kills landed inside a checkpoint file's write");
        Assert.True(Directory.GetFiles(_dir, "*.tmp-*").Length <= 2, "stale temporary files were not cleaned up by later runs");
    }
}
