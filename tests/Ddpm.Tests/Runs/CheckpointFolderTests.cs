using Ddpm.Runs;
using Ddpm.Data;
using Ddpm.Tests.Training;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Runs;

/// <summary>Rotation of numbered checkpoints, and failed writes (a full disk) that leave the previous checkpoint
/// intact.</summary>
public class CheckpointFolderTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("ckpt-folder");
    private static readonly Device Cpu = new("cpu");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static Trainer TinyTrainer()
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: 100);
        return new Trainer(new Ddpm.Models.UNet(config.Model), config, Cpu);
    }

    [Fact]
    public void Saving_keeps_the_last_K_numbered_checkpoints_and_the_latest_equals_the_newest()
    {
        using var trainer = TinyTrainer();
        using var data = SyntheticImages.Create(8, 1, 8);
        var folder = new CheckpointFolder(_dir, keep: 3);
        for (int i = 0; i < 5; i++)
        {
            trainer.TrainEpoch(data);
            folder.Save(trainer.Step, trainer.Save);
        }
        Assert.Equal([3L, 4L, 5L], folder.Numbered().Select(n => n.Step));
        Assert.Equal(File.ReadAllBytes(folder.NumberedPath(5)), File.ReadAllBytes(folder.LatestPath));
        Assert.Equal(5, Checkpoint.ReadManifest(folder.LatestPath).Step);
        Assert.Empty(Directory.GetFiles(_dir, "*.tmp-*"));
    }

    [Fact]
    public void With_keep_0_only_the_latest_is_written()
    {
        using var trainer = TinyTrainer();
        var folder = new CheckpointFolder(_dir, keep: 0);
        folder.Save(trainer.Step, trainer.Save);
        Assert.Equal([CheckpointFolder.LatestName], Directory.GetFiles(_dir).Select(Path.GetFileName));
    }

    /// <summary>
    /// The temporary file's path is made a symlink to /dev/full, so the checkpoint's bytes really hit ENOSPC ("No space
    /// left on device") mid-write, as on a full disk. (Read-only folders would not stop the tests, which run as root.)
    /// </summary>
    [Theory]
    [InlineData(3)]
    [InlineData(0)]
    public void A_full_disk_during_a_checkpoint_write_fails_clearly_and_leaves_the_previous_checkpoint_intact(int keep)
    {
        Assert.True(File.Exists("/dev/full"), "this test needs Linux's /dev/full");
        using var trainer = TinyTrainer();
        using var data = SyntheticImages.Create(8, 1, 8);
        var folder = new CheckpointFolder(_dir, keep);
        trainer.TrainEpoch(data);
        folder.Save(trainer.Step, trainer.Save);
        var before = File.ReadAllBytes(folder.LatestPath);
        trainer.TrainEpoch(data);
        var target = keep == 0 ? folder.LatestPath : folder.NumberedPath(trainer.Step);
        var tmp = target + $".tmp-{Environment.ProcessId}";
        File.CreateSymbolicLink(tmp, "/dev/full");

        var e = Assert.Throws<CheckpointException>(() => folder.Save(trainer.Step, trainer.Save));
        Assert.Contains("No space left on device", e.Message);
        Assert.Contains("intact", e.Message);
        Assert.Equal(before, File.ReadAllBytes(folder.LatestPath));
        Assert.False(File.Exists(tmp) || new FileInfo(tmp).LinkTarget is not null, "the temporary file was left behind");
        Assert.False(keep > 0 && File.Exists(target), "a numbered checkpoint appeared although its write failed");
        Checkpoint.LoadModel(folder.LatestPath).Model.Dispose();
    }

    [Fact]
    public void A_failure_publishing_the_latest_leaves_the_previous_latest_intact()
    {
        using var trainer = TinyTrainer();
        using var data = SyntheticImages.Create(8, 1, 8);
        var folder = new CheckpointFolder(_dir, keep: 2);
        trainer.TrainEpoch(data);
        folder.Save(trainer.Step, trainer.Save);
        var before = File.ReadAllBytes(folder.LatestPath);
        trainer.TrainEpoch(data);
        var blocker = folder.LatestPath + $".tmp-{Environment.ProcessId}";
        Directory.CreateDirectory(Path.Combine(blocker, "occupied")); // a non-empty folder where the link must go
        var e = Assert.Throws<CheckpointException>(() => folder.Save(trainer.Step, trainer.Save));
        Assert.Contains("intact", e.Message);
        Assert.Equal(before, File.ReadAllBytes(folder.LatestPath));
        Directory.Delete(blocker, recursive: true);
    }
}
