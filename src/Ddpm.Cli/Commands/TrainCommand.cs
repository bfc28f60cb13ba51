using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Distributed;
using Ddpm.IO;
using Ddpm.Logging;
using Ddpm.Training;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm train</c>: Algorithm 1 with a progress bar, a CSV log and a checkpoint per epoch (the last
/// <c>keep_checkpoints</c> as <c>checkpoint-&lt;step&gt;.ckpt</c>, the latest as <c>checkpoint.ckpt</c>). SIGINT (Ctrl-C)
/// and SIGTERM finish the current step, save a checkpoint and exit with 130 / 143.
/// Under <c>mpirun -n N</c> it trains data-parallel (<see cref="DataParallel"/>); only rank 0 logs, shows progress and
/// writes files.
/// </summary>
internal static class TrainCommand
{
    public const string CheckpointFile = CheckpointFolder.LatestName;
    /// <summary>Exit codes after an interrupt (128 + the signal number, as shells report it).</summary>
    public const int InterruptedBySigint = 130, InterruptedBySigterm = 143;

    public static Command Create()
    {
        var config = new Option<string?>("--config") { Description = "YAML config (the reference's schema); with --resume optional (the checkpoint holds it) and, when given, checked against the checkpoint's" };
        var device = CommonOptions.DeviceOption();
        var epochs = new Option<int?>("--epochs") { Description = "override train_params.num_epochs" };
        var maxSteps = new Option<long?>("--max-steps") { Description = "override train_params.max_steps (0 = no limit)" };
        var batch = new Option<int?>("--batch-size") { Description = "override train_params.batch_size" };
        var lr = new Option<double?>("--lr") { Description = "override train_params.lr" };
        var seed = new Option<long?>("--seed") { Description = "override train_params.seed" };
        var output = new Option<string?>("--out") { Description = "output directory (default: runs/<task_name>)" };
        var resume = new Option<bool>("--resume") { Description = $"continue the run in --out from its {CheckpointFile}, with the checkpoint's config (only run-length keys may change)" };
        var overwrite = new Option<bool>("--overwrite") { Description = "replace the run already in --out (its checkpoints, logs and config.yaml)" };

        var cmd = new Command("train", "Train the U-Net on the config's dataset (Algorithm 1)")
        {
            config, device, epochs, maxSteps, batch, lr, seed, output, resume, overwrite,
        };
        cmd.SetAction(p =>
        {
            bool isResume = p.GetValue(resume), isOverwrite = p.GetValue(overwrite);
            if (isResume && isOverwrite)
                throw new UsageException("--resume continues the run in --out and --overwrite replaces it: give one of them");
            var configPath = p.GetValue(config);
            if (configPath is null && !isResume)
                throw new UsageException("--config is required (only --resume may leave it out: the checkpoint holds the config)");
            var overrides = new Overrides(p.GetValue(epochs), p.GetValue(maxSteps), p.GetValue(batch), p.GetValue(lr), p.GetValue(seed));
            var given = configPath is null ? null : overrides.Apply(DdpmConfig.Load(configPath));
            var outDir = p.GetValue(output) ?? (given is not null ? Path.Combine("runs", given.Train.TaskName)
                : throw new UsageException("--resume without --config needs --out (the run folder)"));
            var deviceChoice = p.GetValue(device);
            var request = new Request(given, overrides, outDir, isResume, isOverwrite,
                ResumeCommand(configPath, outDir, overrides, p.GetResult(device) is { Implicit: false } ? deviceChoice.ToString() : null));
            return Run(request, CommonOptions.ResolveDevice(deviceChoice));
        });
        return cmd;
    }

    /// <summary>The command-line overrides of the config's train_params.</summary>
    internal sealed record Overrides(int? Epochs = null, long? MaxSteps = null, int? BatchSize = null, double? Lr = null, long? Seed = null)
    {
        public DdpmConfig Apply(DdpmConfig cfg) => ApplyOverrides(cfg, Epochs, MaxSteps, BatchSize, Lr, Seed);
    }

    /// <summary>What one <c>ddpm train</c> was asked: the config given (null: resume with the checkpoint's), where, and how.</summary>
    internal sealed record Request(DdpmConfig? Given, Overrides Overrides, string OutDir, bool Resume, bool Overwrite, string ResumeCommand);

    internal static DdpmConfig ApplyOverrides(DdpmConfig cfg, int? epochs, long? maxSteps, int? batch, double? lr, long? seed) =>
        (cfg with
        {
            Train = cfg.Train with
            {
                NumEpochs = epochs ?? cfg.Train.NumEpochs,
                MaxSteps = maxSteps ?? cfg.Train.MaxSteps,
                BatchSize = batch ?? cfg.Train.BatchSize,
                Lr = lr ?? cfg.Train.Lr,
                Seed = seed ?? cfg.Train.Seed,
            },
        }).Validate();

    /// <summary>
    /// The command that continues this run exactly: the same config file and every override given (a resume compares the
    /// config with the checkpoint's, so what was overridden must be overridden again).
    /// </summary>
    internal static string ResumeCommand(string? configPath, string outDir, Overrides o, string? device)
    {
        var parts = new List<string> { "ddpm", "train" };
        if (configPath is not null) parts.AddRange(["--config", Quote(configPath)]);
        parts.AddRange(["--out", Quote(outDir), "--resume"]);
        if (o.Epochs is { } e) parts.AddRange(["--epochs", e.ToString(CultureInfo.InvariantCulture)]);
        if (o.MaxSteps is { } m) parts.AddRange(["--max-steps", m.ToString(CultureInfo.InvariantCulture)]);
        if (o.BatchSize is { } b) parts.AddRange(["--batch-size", b.ToString(CultureInfo.InvariantCulture)]);
        if (o.Lr is { } l) parts.AddRange(["--lr", l.ToString("R", CultureInfo.InvariantCulture)]);
        if (o.Seed is { } s) parts.AddRange(["--seed", s.ToString(CultureInfo.InvariantCulture)]);
        if (device is not null) parts.AddRange(["--device", Quote(device)]);
        return string.Join(' ', parts);
    }

    /// <summary>A word as a POSIX shell reads it back (single-quoted when it holds anything but safe characters).</summary>
    private static string Quote(string word) =>
        word.Length > 0 && word.All(c => char.IsAsciiLetterOrDigit(c) || "-_./:=+@%,".Contains(c)) ? word : "'" + word.Replace("'", "'\\''") + "'";

    /// <summary>Files that make a folder hold a run (a fresh train into it is refused unless --overwrite), with TensorBoard's event files.</summary>
    private static readonly string[] RunFiles = ["config.yaml", "train_log.csv", "loss.csv", TrainingPreview.FileName];
    private const string TensorBoardEvents = "events.out.tfevents.*";

    private static IEnumerable<string> RunFilesIn(string outDir) =>
        RunFiles.Select(f => Path.Combine(outDir, f)).Where(File.Exists)
            .Concat(Directory.Exists(outDir) ? Directory.GetFiles(outDir, TensorBoardEvents) : []);

    private static int Run(Request request, TorchSharp.torch.Device device)
    {
        var outDir = request.OutDir;
        // Refuse a model or batch that cannot fit before touching the folder (resume checks its stored config).
        if (!request.Resume) MemoryEstimate.EnsureFits(request.Given!, device);
        // mpirun: data parallel over the job's ranks; rank 0 alone owns the run folder and writes.
        using var parallel = MpiCommunicator.Current is { } mpi ? DataParallel.Create(mpi, device) : null;
        var checkpoints = new CheckpointFolder(outDir, request.Given?.Train.KeepCheckpoints ?? 0);
        var ckpt = checkpoints.LatestPath;
        if (request.Resume && !File.Exists(ckpt)) throw new UsageException($"--resume: no checkpoint at {ckpt}");
        if (parallel is { IsRoot: false })
        {
            // Rank 0 checks and claims the folder; the others wait for its verdict and never touch the folder.
            if (parallel.Communicator.Any(false)) throw new TrainingException("rank 0 did not start the run (its message says why)");
            return Train(request, device, checkpoints, parallel, () => { });
        }
        if (parallel is null) return RunOwner(request, device, checkpoints, null);
        bool started = false;
        try
        {
            return RunOwner(request, device, checkpoints, parallel, () =>
            {
                started = true;
                parallel.Communicator.Any(false); // the folder is claimed: the other ranks start
            });
        }
        catch when (!started)
        {
            parallel.Communicator.Any(true); // tell the other ranks not to start
            throw;
        }
    }

    /// <summary>
    /// The process that owns the run folder (the only one, or rank 0): takes its lock, claims it for a fresh run or
    /// resumes, trains; a run that saved nothing leaves nothing behind. <paramref name="onClaimed"/> runs once the folder is ours.
    /// </summary>
    private static int RunOwner(Request request, TorchSharp.torch.Device device, CheckpointFolder checkpoints, DataParallel? parallel, Action? onClaimed = null)
    {
        var outDir = request.OutDir;
        var ckpt = checkpoints.LatestPath;
        var created = CreateFolder(outDir);
        bool saved = false, claimed = false;
        RunLock? runLock = null;
        try
        {
            try { runLock = RunLock.Acquire(outDir); }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new TrainingException($"--out {outDir}: cannot write to the run folder ({e.Message})");
            }
            if (runLock.TakenOverFrom is { } dead)
                Console.Error.WriteLine($"note: took over the stale lock of a run that is no longer running ({dead}) in {outDir}");
            if (!request.Resume) ClaimFresh(outDir, checkpoints, request.Overwrite);
            claimed = true;
            onClaimed?.Invoke();
            return Train(request, device, checkpoints, parallel, () => saved = true);
        }
        catch (Exception e) when (!saved && !request.Resume && e is not RunLockedException)
        {
            // Nothing of this run is worth keeping: remove what it wrote, and the folders it made.
            if (claimed) RemoveRunFiles(outDir, checkpoints);
            runLock?.Dispose();
            runLock = null;
            RemoveCreated(created);
            if (e is TrainingException t)
                throw new TrainingException($"{t.Message} No checkpoint was written (the run stopped before its first save); " +
                    (created.Count > 0 ? $"{outDir} was removed." : $"the files it had written in {outDir} were removed."));
            throw;
        }
        catch (TrainingException e) when (e is not RunLockedException && File.Exists(ckpt))
        {
            var kept = Checkpoint.ReadManifest(ckpt);
            throw new TrainingException($"{e.Message} The last checkpoint (step {kept.Step}, epoch {kept.Epoch}) was kept: {ckpt}");
        }
        finally
        {
            runLock?.Dispose();
        }
    }

    /// <summary>Creates <paramref name="outDir"/>; returns the folders that did not exist, deepest first.</summary>
    private static List<string> CreateFolder(string outDir)
    {
        var created = new List<string>();
        try
        {
            for (var d = new DirectoryInfo(Path.GetFullPath(outDir)); d is not null && !d.Exists && !File.Exists(d.FullName); d = d.Parent)
                created.Add(d.FullName);
            Directory.CreateDirectory(outDir);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            var why = File.Exists(outDir) ? "it is a file, not a folder" : e.Message;
            throw new TrainingException($"--out {outDir}: cannot create the run folder ({why})");
        }
        return created;
    }

    private static void RemoveCreated(List<string> created)
    {
        foreach (var d in created)
        {
            try
            {
                if (Directory.Exists(d) && !Directory.EnumerateFileSystemEntries(d).Any()) Directory.Delete(d);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    /// <summary>A fresh run needs a folder without one: refuse, or with --overwrite remove the old run's files.</summary>
    private static void ClaimFresh(string outDir, CheckpointFolder checkpoints, bool overwrite)
    {
        bool hasCheckpoint = File.Exists(checkpoints.LatestPath) || checkpoints.Numbered().Count > 0;
        bool hasRun = hasCheckpoint || RunFilesIn(outDir).Any();
        if (!hasRun) return;
        string what = File.Exists(checkpoints.LatestPath) ? Describe(checkpoints.LatestPath) : "the files of an earlier run";
        if (!overwrite)
            throw new UsageException($"{outDir} already holds a run ({what}); continue it with --resume, " +
                "choose a new --out, or pass --overwrite to replace it");
        RemoveRunFiles(outDir, checkpoints);
        Console.Error.WriteLine($"--overwrite: removed the earlier run in {outDir} ({what})");
    }

    private static string Describe(string ckpt)
    {
        try
        {
            var m = Checkpoint.ReadManifest(ckpt);
            return $"{CheckpointFile} at step {m.Step}, epoch {m.Epoch}";
        }
        catch (CheckpointException) { return $"an unreadable {CheckpointFile}"; }
    }

    /// <summary>Deletes a run's checkpoints, logs (TensorBoard's too), preview and config.yaml (nothing else in the folder).</summary>
    private static void RemoveRunFiles(string outDir, CheckpointFolder checkpoints)
    {
        foreach (var (_, path) in checkpoints.Numbered()) File.Delete(path);
        File.Delete(checkpoints.LatestPath);
        foreach (var f in RunFilesIn(outDir).ToList()) File.Delete(f);
    }

    /// <summary>
    /// For --resume: the checkpoint's config, with only the run-length keys taken from <paramref name="request"/> (its config,
    /// else the checkpoint's with the command-line overrides); any other difference is refused, listed.
    /// </summary>
    private static DdpmConfig ResumedConfig(DdpmConfig stored, Request request, string ckpt)
    {
        var given = request.Given ?? request.Overrides.Apply(stored);
        var differences = ConfigDifferences.Between(stored, given, ConfigDifferences.RunLengthKeys);
        if (differences.Count > 0)
            throw new UsageException($"--resume: the run in {request.OutDir} was trained with another config ({ckpt} holds it); " +
                $"only {string.Join(", ", ConfigDifferences.RunLengthKeys.Select(k => k.Split('.')[1]))} may change on resume. Differences (checkpoint → given):\n  " +
                string.Join("\n  ", differences) + "\nResume without --config to use the checkpoint's, or train into a new --out");
        return stored with
        {
            Train = stored.Train with
            {
                NumEpochs = given.Train.NumEpochs, MaxSteps = given.Train.MaxSteps, KeepCheckpoints = given.Train.KeepCheckpoints,
            },
        };
    }

    private static int Train(Request request, TorchSharp.torch.Device device, CheckpointFolder checkpoints, DataParallel? parallel, Action onSaved)
    {
        var outDir = request.OutDir;
        var ckpt = checkpoints.LatestPath;
        bool root = parallel?.IsRoot ?? true;
        var info = root ? Console.Error : TextWriter.Null;
        var options = new TrainerOptions { Warn = root ? Console.Error.WriteLine : null, Parallel = parallel };
        using var trainer = request.Resume
            ? Trainer.Resume(ckpt, device, stored => ResumedConfig(stored, request, ckpt), options)
            : Trainer.Create(request.Given!, device, options);
        var cfg = trainer.Config;
        if (request.Resume)
        {
            // A finished run stays as it is: nothing trained, config.yaml and the logs untouched.
            if (trainer.Finished)
                throw new UsageException($"--resume: the run in {outDir} is already at step {trainer.Step} (epoch {trainer.Epoch}), " +
                    $"which reaches num_epochs {cfg.Train.NumEpochs}{(cfg.Train.MaxSteps > 0 ? $" / max_steps {cfg.Train.MaxSteps}" : "")}; " +
                    "give a larger --epochs or --max-steps to go on");
            info.WriteLine($"resuming from {ckpt}: epoch {trainer.Epoch}, step {trainer.Step}");
        }
        if (cfg.Train.KeepCheckpoints != checkpoints.Keep) checkpoints = new CheckpointFolder(outDir, cfg.Train.KeepCheckpoints);
        // The data of the run's own config (on resume the checkpoint's), loaded once the model is known to fit.
        var loadClock = System.Diagnostics.Stopwatch.StartNew();
        if (parallel is not null && !root) parallel.Communicator.Any(false); // rank 0 loads (and fetches) first
        using var data = DatasetFactory.Load(cfg.Dataset, cfg.Model, new MnistSource { Log = info.WriteLine });
        if (parallel is not null && root) parallel.Communicator.Any(false);
        info.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"loaded {data.Count:N0} images from {data.Description} in {loadClock.Elapsed.TotalSeconds:F2} s, RSS {Environment.WorkingSet / 1048576.0:F0} MB"));
        if (root) AtomicFile.WriteAllText(Path.Combine(outDir, "config.yaml"), cfg.ToYaml());
        var ranks = parallel is null ? "" : $" × {parallel.Size} processes (global batch {cfg.Train.BatchSize * parallel.Size}, {TorchSharp.torch.get_num_threads()} threads each)";
        info.WriteLine($"training {trainer.Model.ParameterCount():N0} parameters on {data.Description} " +
            $"({data.Count:N0} images), device {device.type}, batch {cfg.Train.BatchSize}{ranks}, " +
            $"{cfg.Train.NumEpochs} epochs{(cfg.Train.MaxSteps > 0 ? $", at most {cfg.Train.MaxSteps} steps" : "")} → {outDir}");

        using var cancel = new CancellationTokenSource();
        int interruptCode = 0;
        // Both signals only request a stop: the current step finishes, a checkpoint is written, then the exit code says which.
        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            Interlocked.CompareExchange(ref interruptCode, context.Signal == PosixSignal.SIGTERM ? InterruptedBySigterm : InterruptedBySigint, 0);
            cancel.Cancel();
        }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        // A fresh run starts its logs; a resumed one continues them from its checkpoint's step (rows a killed process wrote after it are dropped).
        long? continueAt = request.Resume ? trainer.Step : null;
        var epochLog = root ? OpenLog(Path.Combine(outDir, "train_log.csv"), "epoch,step,mean_loss,seconds,images_per_s,rss_start_mb,rss_end_mb", stepColumn: 1, continueAt) : StreamWriter.Null;
        var stepLog = root ? OpenLog(Path.Combine(outDir, "loss.csv"), "step,loss", stepColumn: 0, continueAt) : StreamWriter.Null;
        var board = root ? new TensorBoardLog(outDir) : null; // TensorBoard: per step and per epoch, with a sample grid
        var logFlush = System.Diagnostics.Stopwatch.StartNew();
        using (epochLog)
        using (stepLog)
        {
            var progress = new ProgressLine();
            while (!trainer.Finished && !trainer.Stopped)
            {
                var report = trainer.TrainEpoch(data, s =>
                {
                    if (!root) return;
                    stepLog.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{s.Step},{s.Loss:G6}"));
                    if (logFlush.Elapsed >= TimeSpan.FromSeconds(1)) { stepLog.Flush(); logFlush.Restart(); } // ddpm serve's live loss curve reads it
                    board?.Step(s, trainer.LearningRates?.At(s.Step - 1) ?? cfg.Train.Lr); // the scheduled lr of that step
                    var (done, total) = EpochProgress(s, cfg.Train.MaxSteps);
                    progress.Update(done, total,
                        string.Create(CultureInfo.InvariantCulture, $"epoch {s.Epoch}/{cfg.Train.NumEpochs} loss {s.Loss:F4} {s.ImagesPerSecond:F1} img/s"),
                        s.ImagesPerSecond > 0 ? TimeSpan.FromSeconds((total - done) * cfg.Train.BatchSize * (parallel?.Size ?? 1) / s.ImagesPerSecond) : null);
                }, cancel.Token);
                if (root) progress.Finish();
                if (report is null) break;
                if (root) checkpoints.Save(trainer.Step, trainer.Save);
                onSaved();
                epochLog.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"{report.Epoch},{report.Step},{report.MeanLoss:G6},{report.Seconds:F2},{report.ImagesPerSecond:F2},{report.RssStartBytes / 1048576.0:F1},{report.RssEndBytes / 1048576.0:F1}"));
                epochLog.Flush();
                stepLog.Flush();
                board?.Epoch(report);
                if (root && !cancel.IsCancellationRequested)
                    board!.Image("samples", TrainingPreview.Write(trainer, Path.Combine(outDir, TrainingPreview.FileName)), report.Step);
                info.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"epoch {report.Epoch}{(report.Complete ? "" : " (partial)")}: mean loss {report.MeanLoss:F4}, {report.Steps} steps in {report.Seconds:F1} s " +
                    $"({report.ImagesPerSecond:F1} img/s), RSS {report.RssStartBytes / 1048576.0:F0} → {report.RssEndBytes / 1048576.0:F0} MB; saved {ckpt}"));
            }
        }
        if (parallel?.LastAgreement is { } agreed)
            info.WriteLine($"weights bit-identical on all {parallel.Size} ranks after step {agreed.Step} (checksum {agreed.Checksum:x16})");
        if (trainer.Stopped)
        {
            // Data parallel, a rank may stop because another one was signalled.
            var signal = interruptCode switch { InterruptedBySigterm => "SIGTERM", InterruptedBySigint => "SIGINT", _ => "a signal to another rank" };
            info.WriteLine($"interrupted by {signal} at step {trainer.Step}; checkpoint saved to {ckpt}. " +
                $"Resume with: {(parallel is null ? "" : $"mpirun -n {parallel.Size} ")}{request.ResumeCommand}");
            return interruptCode == 0 ? InterruptedBySigterm : interruptCode;
        }
        if (root) Console.WriteLine(ckpt);
        return CliApp.Ok;
    }

    /// <summary>
    /// The progress bar's position in this epoch: steps done and the step the epoch ends at — its last batch, or earlier
    /// where <c>max_steps</c> stops the run (so the ETA counts only the steps that will run).
    /// </summary>
    internal static (long Done, long Total) EpochProgress(StepReport s, long maxSteps)
    {
        long end = s.StepsInEpoch;
        if (maxSteps > 0) end = Math.Min(end, s.StepInEpoch + Math.Max(0, maxSteps - s.Step));
        return (s.StepInEpoch, end);
    }

    /// <summary>
    /// Opens a CSV log: a fresh run starts it anew (never appending to another run's rows); a resumed run keeps the rows up
    /// to step <paramref name="continueAt"/> (column <paramref name="stepColumn"/>) and appends.
    /// </summary>
    private static StreamWriter OpenLog(string path, string header, int stepColumn, long? continueAt)
    {
        if (continueAt is not { } step || !File.Exists(path))
        {
            var fresh = new StreamWriter(path, append: false);
            fresh.WriteLine(header);
            return fresh;
        }
        var kept = new List<string> { header };
        foreach (var line in File.ReadLines(path).Skip(1))
        {
            var cells = line.Split(',');
            if (cells.Length > stepColumn && long.TryParse(cells[stepColumn], NumberStyles.Integer, CultureInfo.InvariantCulture, out var s) && s <= step)
                kept.Add(line);
        }
        AtomicFile.WriteAllText(path, string.Join('\n', kept) + "\n");
        return new StreamWriter(path, append: true);
    }
}
