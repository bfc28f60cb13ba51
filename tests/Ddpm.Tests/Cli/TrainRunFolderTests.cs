using Ddpm.Runs;
using System.Diagnostics;
using Ddpm.Cli;
using Ddpm.Configuration;
using Ddpm.Training;

namespace Ddpm.Tests.Cli;

/// <summary>
/// Issue 19, <c>ddpm train</c>'s run folder: one owner (a lock file naming PID and start time, stale ones taken over),
/// a fresh run never mixes with an old one (refused unless --overwrite; logs never appended across runs), resume takes
/// the checkpoint's config as the truth (other configs refused with the differences listed), failures leave nothing
/// behind and say truthfully whether a checkpoint exists, and the progress ETA counts the steps that will run.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public class TrainRunFolderTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("runfolder");
    private readonly string _config;

    public TrainRunFolderTests()
    {
        _config = Path.Combine(_dir, "tiny.yaml");
        File.WriteAllText(_config, TinyCli.Yaml(batchSize: 8, numEpochs: 1000));
    }

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static (int Code, string Stderr) Run(params string[] args) => TinyCli.RunCapturingStderr(args);

    private (int Code, string Stderr) Train(string run, params string[] extra) =>
        Run(["train", "--config", _config, "--out", run, "--device", "cpu", .. extra]);

    private static long[] LoggedSteps(string run) =>
        File.ReadAllLines(Path.Combine(run, "loss.csv")).Skip(1).Select(l => long.Parse(l.Split(',')[0])).ToArray();

    /// <summary>Every file of the run folder with its SHA-256, to show that a refused command changed
    /// nothing.</summary>
    private static string Snapshot(string run) => string.Join("\n", Directory.GetFiles(run).Order(StringComparer.Ordinal)
        .Select(f => Path.GetFileName(f) + " " + Convert.ToHexString(System.Security.Cryptography.SHA256.HashData(File.ReadAllBytes(f)))));

    private static void NoStackTrace(string stderr) => Assert.DoesNotContain("   at ", stderr);

    [Fact]
    public void A_folder_locked_by_a_running_process_is_refused_naming_the_holder_and_nothing_is_written()
    {
        var run = Path.Combine(_dir, "locked");
        Directory.CreateDirectory(run);
        using (var held = RunLock.Acquire(run)) // this test process: alive, so the lock is live
        {
            var (code, stderr) = Train(run, "--max-steps", "1");
            Assert.Equal(CliApp.Failure, code);
            Assert.Contains("in use by another training run", stderr);
            Assert.Contains($"PID {Environment.ProcessId}", stderr);
            NoStackTrace(stderr);
            Assert.Equal([RunLock.FileName], Directory.GetFiles(run).Select(Path.GetFileName));
        }
        Assert.Empty(Directory.GetFiles(run)); // released
    }

    [Fact]
    public void A_stale_lock_of_a_dead_or_reused_pid_is_taken_over_with_a_message_and_released_after()
    {
        int deadPid = Reliability.ChildProcess.DeadPid();
        var holders = new[]
        {
            new RunLock.Holder(deadPid, DateTime.UtcNow.AddMinutes(-5)),
            new RunLock.Holder(Environment.ProcessId, new DateTime(2001, 1, 1, 0, 0, 0, DateTimeKind.Utc)), // PID reused since
        };
        for (int i = 0; i < holders.Length; i++)
        {
            var run = Path.Combine(_dir, $"stale{i}");
            Directory.CreateDirectory(run);
            File.WriteAllText(Path.Combine(run, RunLock.FileName), RunLock.Format(holders[i]));
            var (code, stderr) = Train(run, "--max-steps", "1");
            Assert.True(code == CliApp.Ok, stderr);
            Assert.Contains("took over the stale lock", stderr);
            Assert.Contains($"PID {holders[i].Pid}", stderr);
            Assert.False(File.Exists(Path.Combine(run, RunLock.FileName)));
            Assert.Equal(1, Checkpoint.ReadManifest(Path.Combine(run, CheckpointFolder.LatestName)).Step);
        }
    }

    [Fact]
    public void A_fresh_train_into_a_folder_holding_a_run_is_refused_and_overwrite_replaces_it_with_fresh_logs()
    {
        var run = Path.Combine(_dir, "held");
        Assert.Equal(CliApp.Ok, Train(run, "--max-steps", "3").Code);
        var ckpt = Path.Combine(run, CheckpointFolder.LatestName);
        var before = Snapshot(run);

        var (code, stderr) = Train(run, "--max-steps", "2", "--seed", "9");
        Assert.Equal(CliApp.Usage, code);
        Assert.Contains("already holds a run (checkpoint.ckpt at step 3", stderr);
        Assert.Contains("--resume", stderr);
        Assert.Contains("new --out", stderr);
        Assert.Contains("--overwrite", stderr);
        NoStackTrace(stderr);
        Assert.Equal(before, Snapshot(run));

        (code, stderr) = Train(run, "--max-steps", "2", "--seed", "9", "--overwrite");
        Assert.True(code == CliApp.Ok, stderr);
        Assert.Contains("--overwrite: removed the earlier run", stderr);
        Assert.Equal([1L, 2L], LoggedSteps(run)); // the new run's rows only
        Assert.Equal(2, Checkpoint.ReadManifest(ckpt).Step);
        Assert.Equal(9, DdpmConfig.Load(Path.Combine(run, "config.yaml")).Train.Seed);
        Assert.All(new CheckpointFolder(run, 0).Numbered(), n => Assert.Equal(2, n.Step)); // no numbered checkpoint of the old run

        Assert.Equal(CliApp.Usage, Train(run, "--resume", "--overwrite").Code);
    }

    [Fact]
    public void Resume_refuses_a_config_differing_beyond_run_length_listing_the_differences_and_changes_nothing()
    {
        var run = Path.Combine(_dir, "resume");
        Assert.Equal(CliApp.Ok, Train(run, "--max-steps", "2").Code);
        var before = Snapshot(run);
        var other = Path.Combine(_dir, "other.yaml");
        File.WriteAllText(other, TinyCli.Yaml(batchSize: 16, numEpochs: 1000)
            .Replace("name: synthetic", "name: synthetic\n  random_flip: true").Replace("num_timesteps: 20", "num_timesteps: 30"));

        var (code, stderr) = Run("train", "--config", other, "--out", run, "--resume", "--max-steps", "4", "--device", "cpu");
        Assert.Equal(CliApp.Usage, code);
        Assert.Contains("train_params.batch_size: 8 → 16", stderr);
        Assert.Contains("diffusion_params.num_timesteps: 20 → 30", stderr);
        Assert.Contains("dataset_params.random_flip: false → true", stderr);
        Assert.DoesNotContain("max_steps:", stderr); // run length may change
        NoStackTrace(stderr);
        Assert.Equal(before, Snapshot(run));

        // An override given at the start must be given again: without it the seed differs.
        Assert.Equal(CliApp.Ok, Train(Path.Combine(_dir, "seeded"), "--max-steps", "2", "--seed", "7").Code);
        (code, stderr) = Train(Path.Combine(_dir, "seeded"), "--resume", "--max-steps", "3");
        Assert.Equal(CliApp.Usage, code);
        Assert.Contains("train_params.seed: 7 → 0", stderr);
        (code, stderr) = Train(Path.Combine(_dir, "seeded"), "--resume", "--max-steps", "3", "--seed", "7");
        Assert.True(code == CliApp.Ok, stderr);
        Assert.Equal(3, Checkpoint.ReadManifest(Path.Combine(_dir, "seeded", CheckpointFolder.LatestName)).Step);
    }

    [Fact]
    public void Resume_without_a_config_uses_the_checkpoints_and_keeps_the_logs_to_its_step()
    {
        var run = Path.Combine(_dir, "noconfig");
        Assert.Equal(CliApp.Ok, Train(run, "--max-steps", "2", "--lr", "0.002").Code);
        // A killed process may have logged steps after its last checkpoint: they are redone, not duplicated.
        File.AppendAllText(Path.Combine(run, "loss.csv"), "3,0.5\n4,0.5\n");

        var (code, stderr) = Run("train", "--out", run, "--resume", "--max-steps", "4", "--device", "cpu");
        Assert.True(code == CliApp.Ok, stderr);
        Assert.Equal([1L, 2L, 3L, 4L], LoggedSteps(run));
        var written = DdpmConfig.Load(Path.Combine(run, "config.yaml"));
        Assert.Equal(4, written.Train.MaxSteps);
        Assert.Equal(0.002, written.Train.Lr);
        Assert.Equal(4, Checkpoint.ReadManifest(Path.Combine(run, CheckpointFolder.LatestName)).Step);
    }

    [Fact]
    public void Resuming_a_finished_run_is_refused_and_config_yaml_is_not_rewritten_backwards()
    {
        var run = Path.Combine(_dir, "finished");
        Assert.Equal(CliApp.Ok, Train(run, "--max-steps", "3").Code);
        var yaml = File.ReadAllText(Path.Combine(run, "config.yaml"));
        var log = File.ReadAllText(Path.Combine(run, "loss.csv"));

        var (code, stderr) = Train(run, "--resume", "--max-steps", "2");
        Assert.Equal(CliApp.Usage, code);
        Assert.Contains("already at step 3", stderr);
        Assert.Contains("--max-steps", stderr);
        Assert.Equal(yaml, File.ReadAllText(Path.Combine(run, "config.yaml")));
        Assert.Equal(log, File.ReadAllText(Path.Combine(run, "loss.csv")));
    }

    [Fact]
    public void A_non_finite_stop_before_any_checkpoint_says_so_and_leaves_no_folder()
    {
        var run = Path.Combine(_dir, "nan", "deeper", "run");
        var (code, stderr) = Train(run, "--max-steps", "6", "--lr", "1e30");
        Assert.Equal(CliApp.Failure, code);
        Assert.Contains("training stopped", stderr);
        Assert.Contains("No checkpoint was written", stderr);
        Assert.DoesNotContain("checkpoint was kept", stderr);
        NoStackTrace(stderr);
        Assert.False(Directory.Exists(Path.Combine(_dir, "nan")), "the failed run left its folders behind");
    }

    [Fact]
    public void A_non_finite_stop_after_a_checkpoint_names_the_kept_one()
    {
        // Batches of all 512 images: one step per epoch, so step 1 is checkpointed; lr 1e30 makes step 2 overflow.
        var run = Path.Combine(_dir, "nan-late");
        var (code, stderr) = Train(run, "--max-steps", "6", "--lr", "1e30", "--batch-size", "512");
        Assert.Equal(CliApp.Failure, code);
        Assert.Contains("at step 2", stderr);
        Assert.Contains($"The last checkpoint (step 1, epoch 1) was kept: {Path.Combine(run, CheckpointFolder.LatestName)}", stderr);
        NoStackTrace(stderr);
        Assert.Equal(1, Checkpoint.ReadManifest(Path.Combine(run, CheckpointFolder.LatestName)).Step);
    }

    [Fact]
    public void An_unwritable_out_fails_with_one_line_before_any_data_is_loaded()
    {
        var file = Path.Combine(_dir, "a-file");
        File.WriteAllText(file, "x");
        foreach (var outDir in new[] { file, Path.Combine(file, "below") })
        {
            var (code, stderr) = Train(outDir, "--max-steps", "1");
            Assert.Equal(CliApp.Failure, code);
            Assert.Contains($"--out {outDir}: cannot create the run folder", stderr);
            Assert.DoesNotContain("loaded", stderr);
            Assert.DoesNotContain("unexpected", stderr);
            NoStackTrace(stderr);
        }
        Assert.Equal("x", File.ReadAllText(file));
    }

    [Fact]
    public void A_task_name_cannot_leave_the_runs_folder()
    {
        foreach (var name in new[] { "../../../x", "a/b", "..", "" , "a\\\\b" })
        {
            var e = Assert.Throws<ConfigException>(() => DdpmConfig.Parse(TinyCli.Yaml(taskName: name)));
            Assert.Contains("task_name", e.Message);
        }
        Assert.Equal("run-1", DdpmConfig.Parse(TinyCli.Yaml(taskName: "run-1")).Train.TaskName);
    }

    [Fact]
    public void The_progress_bar_ends_where_max_steps_stops_the_epoch()
    {
        // 512 images in batches of 8: 64 steps per epoch, of which max_steps lets 3 run.
        var (code, stderr) = Train(Path.Combine(_dir, "eta"), "--max-steps", "3");
        Assert.True(code == CliApp.Ok, stderr);
        Assert.Contains("] 3/3 epoch 1/1000", stderr);
        Assert.Contains("ETA 0.0s", stderr);
        Assert.DoesNotContain("/64 ", stderr);
    }
}
