using Ddpm.Configuration;
using Ddpm.Runs;
using Ddpm.Tests.Reliability;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Runs;

/// <summary>
/// The run layer as a library user sees it (<see cref="TrainingRun"/>, <see cref="RunFolder"/>): what <c>ddpm train</c>
/// does, without the CLI. Messages and exit codes of the CLI are <c>Cli/TrainRunFolderTests</c>'s.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public sealed class TrainingRunTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("trainingrun");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static DdpmConfig Config(long maxSteps)
    {
        var c = DdpmConfig.Parse(TinyCli.Yaml(batchSize: 8, numEpochs: 1000));
        return c with { Train = c.Train with { MaxSteps = maxSteps } };
    }

    private static TrainingRunResult Train(TrainingRunRequest request, List<TrainingProgress>? seen = null)
    {
        using var run = TrainingRun.Open(request, CPU, progress: seen is null ? null : new Collect(seen));
        return run.Run();
    }

    private sealed class Collect(List<TrainingProgress> into, Action<TrainingProgress>? then = null) : IProgress<TrainingProgress>
    {
        public void Report(TrainingProgress value)
        {
            into.Add(value);
            then?.Invoke(value);
        }
    }

    [Fact]
    public void A_run_writes_every_file_of_its_folder_and_reports_its_steps_and_epochs()
    {
        var folder = new RunFolder(Path.Combine(_dir, "run"));
        var seen = new List<TrainingProgress>();
        var result = Train(new TrainingRunRequest { Folder = folder.Path, Config = Config(3) }, seen);
        Assert.Equal((false, 3L), (result.Stopped, result.Step));
        Assert.Equal(Path.GetFullPath(folder.LatestCheckpointPath), result.Checkpoint);
        foreach (var file in new[] { folder.ConfigPath, folder.StepLogPath, folder.EpochLogPath, folder.PreviewPath, folder.LatestCheckpointPath })
            Assert.True(File.Exists(file), file);
        Assert.False(File.Exists(folder.LockPath), "the lock outlived the run");
        Assert.NotEmpty(folder.TensorBoardFiles());
        Assert.Equal([1L, 2L, 3L], seen.OfType<TrainingStepDone>().Select(s => s.Step.Step));
        Assert.Equal(3L, seen.OfType<TrainingEpochDone>().Single().Report.Step);
        Assert.Equal(["step,loss", "1", "2", "3"], File.ReadAllLines(folder.StepLogPath).Select(l => l.Split(',')[0] == "step" ? l : l.Split(',')[0]));
    }

    [Fact]
    public void A_stop_at_an_epoch_boundary_writes_no_empty_epoch_row()
    {
        // 512 images in batches of 64: 8 steps an epoch; the stop arrives while epoch 1 is being closed (as a SIGTERM
        // during its checkpoint would), so the next epoch ends before its first step. Issue 25: a "2,8,NaN,…" row.
        var folder = new RunFolder(Path.Combine(_dir, "boundary"));
        var config = DdpmConfig.Parse(TinyCli.Yaml(batchSize: 64, numEpochs: 5));
        using var stop = new CancellationTokenSource();
        var seen = new List<TrainingProgress>();
        using var run = TrainingRun.Open(new TrainingRunRequest { Folder = folder.Path, Config = config }, CPU, progress: new Collect(seen, p =>
        {
            if (p is TrainingEpochDone) stop.Cancel();
        }));
        var result = run.Run(stop.Token);
        Assert.Equal((true, 8L, 1), (result.Stopped, result.Step, result.Epoch));
        var rows = File.ReadAllLines(folder.EpochLogPath);
        Assert.Equal(2, rows.Length);
        Assert.StartsWith("1,8,", rows[1]);
        Assert.DoesNotContain("NaN", File.ReadAllText(folder.EpochLogPath));
        Assert.Single(seen.OfType<TrainingEpochDone>());
        Assert.Equal(8, Checkpoint.ReadManifest(folder.LatestCheckpointPath).Step);
    }

    [UndeletableFolderFact]
    [Trait(TestCategory.Name, TestCategory.Process)]
    public void A_folder_that_becomes_read_only_mid_run_fails_in_one_message_that_explains_the_lock_left_behind()
    {
        // Issue 25: the run failed and train.lock stayed, unexplained. It cannot be removed from such a folder; the
        // message says so and why the next run is not stopped by it.
        var folder = new RunFolder(Path.Combine(_dir, "frozen"));
        var config = DdpmConfig.Parse(TinyCli.Yaml(batchSize: 64, numEpochs: 3));
        var run = TrainingRun.Open(new TrainingRunRequest { Folder = folder.Path, Config = config }, CPU, progress: new Collect([], p =>
        {
            if (p is TrainingEpochDone) UndeletableFolder.Freeze(folder.Path);
        }));
        try
        {
            var e = Assert.Throws<TrainingException>(() => run.Run());
            Assert.Contains($"Its lock train.lock could not be removed (", e.Message);
            Assert.Contains($"the next run in {folder.Path} takes it over", e.Message);
            Assert.DoesNotContain("\n", e.Message);
            Assert.True(File.Exists(folder.LockPath));
        }
        finally
        {
            UndeletableFolder.Thaw(folder.Path);
            run.Dispose();
        }
        // This process still runs, so its lock still holds; a lock of a process that has ended is taken over
        // (RunLockTests).
        Assert.Equal(Environment.ProcessId, RunLock.Parse(File.ReadAllText(folder.LockPath))!.Value.Pid);
    }

    [Fact]
    public void A_fresh_run_into_a_folder_holding_one_is_refused_unless_it_overwrites_it()
    {
        var folder = Path.Combine(_dir, "held");
        Train(new TrainingRunRequest { Folder = folder, Config = Config(2) });
        var before = File.ReadAllBytes(Path.Combine(folder, CheckpointFolder.LatestName));
        var refused = Assert.Throws<RunRequestException>(() => Train(new TrainingRunRequest { Folder = folder, Config = Config(1) }));
        Assert.Contains("already holds a run", refused.Message);
        Assert.Equal(before, File.ReadAllBytes(Path.Combine(folder, CheckpointFolder.LatestName)));
        var replaced = Train(new TrainingRunRequest { Folder = folder, Config = Config(1), Overwrite = true });
        Assert.Equal(1L, replaced.Step);
        Assert.Equal(2, File.ReadAllLines(Path.Combine(folder, RunFolder.StepLogFile)).Length); // header + step 1: no old rows
    }

    [Fact]
    public void A_resumed_run_ends_bit_for_bit_where_one_uninterrupted_run_ends()
    {
        var whole = Path.Combine(_dir, "whole");
        var parts = Path.Combine(_dir, "parts");
        Train(new TrainingRunRequest { Folder = whole, Config = Config(4) });
        Train(new TrainingRunRequest { Folder = parts, Config = Config(2) });
        var resumed = Train(new TrainingRunRequest { Folder = parts, Resume = true, Adjust = c => c with { Train = c.Train with { MaxSteps = 4 } } });
        Assert.Equal(4L, resumed.Step);
        using var a = Checkpoint.LoadModel(Path.Combine(whole, CheckpointFolder.LatestName)).Model;
        using var b = Checkpoint.LoadModel(Path.Combine(parts, CheckpointFolder.LatestName)).Model;
        foreach (var ((name, x), (_, y)) in a.named_parameters().Zip(b.named_parameters()))
            Assert.True(x.equal(y).all().item<bool>(), $"{name} differs after resume");
        Assert.Equal([1L, 2L, 3L, 4L], File.ReadAllLines(Path.Combine(parts, RunFolder.StepLogFile)).Skip(1).Select(l => long.Parse(l.Split(',')[0])));
    }

    [Fact]
    public void A_resume_with_another_config_is_refused_listing_the_differences()
    {
        var folder = Path.Combine(_dir, "resume");
        Train(new TrainingRunRequest { Folder = folder, Config = Config(1) });
        var other = Config(3) with { Train = Config(3).Train with { BatchSize = 16 } };
        var e = Assert.Throws<RunRequestException>(() => Train(new TrainingRunRequest { Folder = folder, Config = other, Resume = true }));
        Assert.Contains("train_params.batch_size: 8 → 16", e.Message);
    }

    [Fact]
    public void A_fresh_run_that_fails_before_its_first_save_leaves_no_folder_behind()
    {
        var folder = Path.Combine(_dir, "new", "deeper");
        var bad = Config(2) with { Dataset = new DatasetOptions { Name = "folder", ImPath = Path.Combine(_dir, "no-such-images") } };
        Assert.ThrowsAny<Exception>(() => Train(new TrainingRunRequest { Folder = folder, Config = bad }));
        Assert.False(Directory.Exists(Path.Combine(_dir, "new")), "the folders the run made are still there");
    }
}
