using Ddpm.Runs;
using Ddpm.Training;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// <c>ddpm train</c> as a child process receiving SIGTERM / SIGINT (sent with kill(2)) mid-epoch: it finishes the
/// current step, writes a checkpoint, says how to resume and exits with 143 / 130.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Process)]
public class SignalTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("signal");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(ChildProcess.Sigterm, 143, "SIGTERM")]
    [InlineData(ChildProcess.Sigint, 130, "SIGINT")]
    public void A_signal_mid_epoch_saves_a_checkpoint_and_exits_with_128_plus_the_signal(int signal, int exitCode, string name)
    {
        var config = Path.Combine(_dir, "tiny.yaml");
        File.WriteAllText(config, TinyCli.Yaml(batchSize: 64)); // 8 steps per epoch
        var run = Path.Combine(_dir, name);
        var lossLog = Path.Combine(run, "loss.csv");
        using var child = ChildProcess.Start(ChildProcess.CliDll, "train", "--config", config, "--out", run, "--device", "cpu",
            "--max-steps", "100000", "--seed", "3");
        // loss.csv gets its first step line after the signal handlers are in place.
        child.WaitUntil(() => File.Exists(lossLog) && ReadShared(lossLog).Split('\n', StringSplitOptions.RemoveEmptyEntries).Length >= 3,
            TimeSpan.FromSeconds(90), "the first training steps");
        // A second train into the same folder while the child runs is refused, naming the child (issue 19 case 2).
        var (secondCode, secondErr) = RunInProcess("train", "--config", config, "--out", run, "--device", "cpu", "--max-steps", "1");
        Assert.Equal(1, secondCode);
        Assert.Contains($"in use by another training run (PID {child.Process.Id}", secondErr);
        ChildProcess.Signal(child.Process, signal);
        Assert.Equal(exitCode, child.WaitForExit(TimeSpan.FromSeconds(60)));

        Assert.Contains(name, child.Stderr);
        // The printed command repeats every override (a resume refuses a config that differs from the checkpoint's).
        var resumeCommand = $"ddpm train --config {config} --out {run} --resume --max-steps 100000 --seed 3 --device cpu";
        Assert.Contains("Resume with: " + resumeCommand + "\n", child.Stderr.ReplaceLineEndings("\n"));
        var ckpt = Path.Combine(run, CheckpointFolder.LatestName);
        var manifest = Checkpoint.ReadManifest(ckpt);
        long logged = ReadShared(lossLog).Split('\n', StringSplitOptions.RemoveEmptyEntries).Length - 1;
        Assert.Equal(logged, manifest.Step); // every finished step is in the checkpoint, none half-done
        Assert.True(manifest.Step >= 2);
        // Run as printed (one step further than the checkpoint instead of 100,000): accepted, and it goes on.
        var args = resumeCommand.Split(' ')[1..];
        args[Array.IndexOf(args, "100000")] = (manifest.Step + 1).ToString(System.Globalization.CultureInfo.InvariantCulture);
        Assert.Equal(0, TinyCli.Run(args));
        Assert.Equal(manifest.Step + 1, Checkpoint.ReadManifest(ckpt).Step);
    }

    private static (int Code, string Stderr) RunInProcess(params string[] args) => TinyCli.RunCapturingStderr(args);

    private static string ReadShared(string path)
    {
        using var s = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return new StreamReader(s).ReadToEnd();
    }
}
