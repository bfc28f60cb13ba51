using System.Globalization;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.IO;
using Ddpm.Logging;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Runs;

/// <summary>
/// A training run in its folder (improved-diffusion's <c>TrainLoop</c>): <see cref="Open"/> claims the folder for a
/// fresh run (refusing one that holds a run unless told to overwrite it) or resumes from its latest checkpoint, holding
/// the folder's lock; <see cref="Run"/> loads the data and trains epoch by epoch, writing the logs, a checkpoint per
/// epoch, the preview and TensorBoard events, until the run is finished or cancelled (a checkpoint is saved then too).
/// A fresh run that saved nothing leaves nothing behind. Data parallel (<see cref="TrainerOptions.Parallel"/>), rank 0
/// alone owns the folder and reports; the other ranks wait for its verdict and never touch the folder.
/// </summary>
public sealed class TrainingRun : IDisposable
{
    private readonly TrainingRunRequest _request;
    private readonly Distributed.DataParallel? _parallel;
    private readonly IProgress<TrainingProgress>? _progress;
    private readonly List<string> _created;
    private RunLock? _lock;
    private CheckpointFolder _checkpoints;
    private bool _saved, _claimed;
    private string? _lockLeftBehind;

    /// <summary>The run's folder.</summary>
    public RunFolder Folder { get; }
    /// <summary>The trainer (its config is the run's: on resume the checkpoint's, with the allowed changes).</summary>
    public Trainer Trainer { get; }
    public DdpmConfig Config => Trainer.Config;
    /// <summary>Whether this process owns the folder and reports (the only process, or rank 0).</summary>
    public bool IsRoot => _parallel?.IsRoot ?? true;

    private TrainingRun(TrainingRunRequest request, Device device, TrainerOptions options, IProgress<TrainingProgress>? progress,
        Action onClaimed)
    {
        _request = request;
        _parallel = options.Parallel;
        Folder = new RunFolder(request.Folder);
        _progress = IsRoot ? progress : null;
        _checkpoints = Folder.Checkpoints(request.Config?.Train.KeepCheckpoints ?? 0);
        _created = IsRoot ? CreateFolder(Folder.Path) : [];
        try
        {
            if (IsRoot)
            {
                _lock = TakeLock();
                if (!request.Resume) ClaimFresh();
                _claimed = true;
            }
            onClaimed();
            options = options with { Warn = IsRoot ? Note : null };
            Trainer = request.Resume
                ? Trainer.Resume(_checkpoints.LatestPath, device, ResumedConfig, options)
                : Trainer.Create(request.Config!, device, options);
        }
        catch (Exception e)
        {
            throw Abandon(e);
        }
        if (Trainer.Config.Train.KeepCheckpoints != _checkpoints.Keep) _checkpoints = Folder.Checkpoints(Trainer.Config.Train.KeepCheckpoints);
        if (!request.Resume) return;
        // A finished run stays as it is: nothing trained, config.yaml and the logs untouched.
        if (Trainer.Finished)
        {
            var train = Config.Train;
            Dispose();
            throw new RunRequestException($"--resume: the run in {Folder.Path} is already at step {Trainer.Step} (epoch {Trainer.Epoch}), " +
                $"which reaches num_epochs {train.NumEpochs}{(train.MaxSteps > 0 ? $" / max_steps {train.MaxSteps}" : "")}; " +
                "give a larger --epochs or --max-steps to go on");
        }
        Note($"resuming from {_checkpoints.LatestPath}: epoch {Trainer.Epoch}, step {Trainer.Step}");
    }

    /// <summary>
    /// Claims <see cref="TrainingRunRequest.Folder"/> (or resumes the run in it) and builds the trainer. A fresh run's
    /// model and batch are checked to fit before the folder is touched.
    /// </summary>
    /// <exception cref="RunRequestException">The request does not fit the folder (a run already there, nothing to
    /// resume, a resume with another config, a finished run).</exception>
    /// <exception cref="TrainingException">The folder cannot be used (in use by another run, not writable).</exception>
    public static TrainingRun Open(TrainingRunRequest request, Device device, TrainerOptions? options = null,
        IProgress<TrainingProgress>? progress = null)
    {
        if (request.Resume && request.Overwrite) throw new RunRequestException(RunRequestException.ResumeOrOverwrite);
        if (!request.Resume && request.Config is null) throw new ArgumentException("a fresh run needs a config", nameof(request));
        options ??= new TrainerOptions();
        if (!request.Resume) MemoryEstimate.EnsureFits(request.Config!, device);
        var latest = new CheckpointFolder(request.Folder, 0).LatestPath;
        if (request.Resume && !File.Exists(latest)) throw new RunRequestException($"--resume: no checkpoint at {latest}");
        if (options.Parallel is not { } parallel) return new TrainingRun(request, device, options, progress, () => { });
        if (!parallel.IsRoot)
        {
            // Rank 0 checks and claims the folder; the others wait for its verdict.
            if (parallel.Communicator.Any(false)) throw new TrainingException("rank 0 did not start the run (its message says why)");
            return new TrainingRun(request, device, options, progress, () => { });
        }
        bool started = false;
        try
        {
            return new TrainingRun(request, device, options, progress, () =>
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
    /// Trains until the run is finished or <paramref name="cancel"/> asks it to stop (the current step finishes and a
    /// checkpoint is saved). Data parallel, a stop on any rank stops all of them at the same step.
    /// </summary>
    public TrainingRunResult Run(CancellationToken cancel = default)
    {
        try
        {
            return Train(cancel);
        }
        catch (Exception e)
        {
            throw Abandon(e);
        }
    }

    private TrainingRunResult Train(CancellationToken cancel)
    {
        var cfg = Config;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var communicator = _parallel?.Communicator;
        if (communicator is not null && !IsRoot) communicator.Any(false); // rank 0 loads (and fetches) first
        using var data = DatasetFactory.Load(cfg.Dataset, cfg.Model, new MnistSource { Log = Note });
        if (communicator is not null && IsRoot) communicator.Any(false);
        if (communicator is not null) Distributed.RankAgreement.Check(communicator, data, cfg); // same data and config everywhere
        Note(string.Create(CultureInfo.InvariantCulture,
            $"loaded {data.Count:N0} images from {data.Description} in {clock.Elapsed.TotalSeconds:F2} s, RSS {Environment.WorkingSet / 1048576.0:F0} MB"));
        if (IsRoot) AtomicFile.WriteAllText(Folder.ConfigPath, cfg.ToYaml());
        var ranks = _parallel is null ? "" : string.Create(CultureInfo.InvariantCulture,
            $" × {_parallel.Size} processes (global batch {cfg.Train.BatchSize * _parallel.Size}, {get_num_threads()} threads each)");
        Note($"training {Trainer.Model.ParameterCount():N0} parameters on {data.Description} ({data.Count:N0} images), " +
            $"device {Trainer.Device.type}, batch {cfg.Train.BatchSize}{ranks}, " +
            $"{cfg.Train.NumEpochs} epochs{(cfg.Train.MaxSteps > 0 ? $", at most {cfg.Train.MaxSteps} steps" : "")} → {Folder.Path}");

        // A fresh run starts its logs; a resumed one continues them from its checkpoint's step.
        long? continueAt = _request.Resume ? Trainer.Step : null;
        using var epochLog = IsRoot ? Folder.OpenEpochLog(continueAt) : StreamWriter.Null;
        using var stepLog = IsRoot ? Folder.OpenStepLog(continueAt) : StreamWriter.Null;
        var board = IsRoot ? new TensorBoardLog(Folder.Path) : null;
        var flushClock = System.Diagnostics.Stopwatch.StartNew();
        int processes = _parallel?.Size ?? 1;
        while (!Trainer.Finished && !Trainer.Stopped)
        {
            var report = Trainer.TrainEpoch(data, s =>
            {
                if (!IsRoot) return;
                stepLog.WriteLine(RunFolder.StepLogRow(s));
                // ddpm serve's live loss curve reads the step log: flushed every second.
                if (flushClock.Elapsed >= TimeSpan.FromSeconds(1)) { stepLog.Flush(); flushClock.Restart(); }
                board!.Step(s, Trainer.LearningRates?.At(s.Step - 1) ?? cfg.Train.Lr); // the scheduled lr of that step
                var (done, total) = EpochProgress(s, cfg.Train.MaxSteps);
                TimeSpan? eta = s.ImagesPerSecond > 0
                    ? TimeSpan.FromSeconds((total - done) * cfg.Train.BatchSize * processes / s.ImagesPerSecond) : null;
                _progress?.Report(new TrainingStepDone(s, cfg.Train.NumEpochs, done, total, eta));
            }, cancel);
            if (report is null) break;
            // A stop that came at an epoch boundary ends the run before the next epoch's first step: that "epoch" is no
            // row of the log (its mean loss would be NaN), and the checkpoint already saved is of this step.
            if (report.Steps == 0 && (_saved || _request.Resume)) break;
            if (IsRoot) _checkpoints.Save(Trainer.Step, Trainer.Save);
            _saved = true;
            stepLog.Flush();
            if (report.Steps == 0) break;
            epochLog.WriteLine(RunFolder.EpochLogRow(report));
            epochLog.Flush();
            board?.Epoch(report);
            if (IsRoot && !cancel.IsCancellationRequested)
                board!.Image("samples", TrainingPreview.Write(Trainer, Folder.PreviewPath), report.Step);
            _progress?.Report(new TrainingEpochDone(report, _checkpoints.LatestPath));
        }
        if (_parallel?.LastAgreement is { } agreed)
            Note($"weights bit-identical on all {_parallel.Size} ranks after step {agreed.Step} (checksum {agreed.Checksum:x16})");
        return new TrainingRunResult(Trainer.Stopped, Trainer.Step, Trainer.Epoch, _checkpoints.LatestPath);
    }

    /// <summary>
    /// The progress bar's position in this epoch: steps done and the step the epoch ends at — its last batch, or
    /// earlier where <c>max_steps</c> stops the run (so an ETA counts only the steps that will run).
    /// </summary>
    public static (long Done, long Total) EpochProgress(StepReport s, long maxSteps)
    {
        long end = s.StepsInEpoch;
        if (maxSteps > 0) end = Math.Min(end, s.StepInEpoch + Math.Max(0, maxSteps - s.Step));
        return (s.StepInEpoch, end);
    }

    private void Note(string text) => _progress?.Report(new TrainingNote(text));

    private RunLock TakeLock()
    {
        RunLock taken;
        try { taken = RunLock.Acquire(Folder.Path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new TrainingException($"--out {Folder.Path}: cannot write to the run folder ({e.Message})");
        }
        if (taken.TakenOverFrom is { } dead)
            Note($"note: took over the stale lock of a run that is no longer running ({dead}) in {Folder.Path}");
        return taken;
    }

    /// <summary>A fresh run needs a folder without one: refuse, or when overwriting remove the old run's
    /// files.</summary>
    private void ClaimFresh()
    {
        if (!Folder.HoldsRun) return;
        string what = File.Exists(_checkpoints.LatestPath) ? Describe(_checkpoints.LatestPath) : "the files of an earlier run";
        if (!_request.Overwrite)
            throw new RunRequestException($"{Folder.Path} already holds a run ({what}); continue it with --resume, " +
                "choose a new --out, or pass --overwrite to replace it");
        Folder.RemoveRun();
        Note($"--overwrite: removed the earlier run in {Folder.Path} ({what})");
    }

    private static string Describe(string ckpt)
    {
        try
        {
            var m = Checkpoint.ReadManifest(ckpt);
            return $"{CheckpointFolder.LatestName} at step {m.Step}, epoch {m.Epoch}";
        }
        catch (CheckpointException) { return $"an unreadable {CheckpointFolder.LatestName}"; }
    }

    /// <summary>
    /// For a resume: the checkpoint's config, with only the run-length keys taken from the request (its config, else
    /// the checkpoint's adjusted by <see cref="TrainingRunRequest.Adjust"/>); any other difference is refused, listed.
    /// </summary>
    private DdpmConfig ResumedConfig(DdpmConfig stored)
    {
        var given = _request.Config ?? _request.Adjust?.Invoke(stored) ?? stored;
        var differences = ConfigDifferences.Between(stored, given, ConfigDifferences.RunLengthKeys);
        if (differences.Count > 0)
            throw new RunRequestException($"--resume: the run in {Folder.Path} was trained with another config ({_checkpoints.LatestPath} holds it); " +
                $"only {string.Join(", ", ConfigDifferences.RunLengthKeys.Select(k => k.Split('.')[1]))} may change on resume. " +
                "Differences (checkpoint → given):\n  " + string.Join("\n  ", differences) +
                "\nResume without --config to use the checkpoint's, or train into a new --out");
        return stored with
        {
            Train = stored.Train with
            {
                NumEpochs = given.Train.NumEpochs, MaxSteps = given.Train.MaxSteps, KeepCheckpoints = given.Train.KeepCheckpoints,
            },
        };
    }

    /// <summary>
    /// What a failure leaves: a fresh run that saved nothing removes what it wrote (and the folders it made) and says
    /// so; otherwise the last checkpoint is named as kept. Returns the exception to throw.
    /// </summary>
    private Exception Abandon(Exception e)
    {
        if (e is RunLockedException || !IsRoot)
        {
            Release();
            return e;
        }
        if (!_saved && !_request.Resume)
        {
            // A folder that became read-only keeps the run's files: say so, rather than fail with the deletion's error.
            string? kept = null;
            try { if (_claimed) Folder.RemoveRun(); }
            catch (Exception io) when (io is IOException or UnauthorizedAccessException) { kept = io.Message; }
            Release();
            if (kept is null) RemoveCreated();
            if (e is TrainingException)
                e = new TrainingException($"{e.Message} No checkpoint was written (the run stopped before its first save); " +
                    (kept is not null ? $"the files it had written in {Folder.Path} could not be removed ({kept})."
                        : _created.Count > 0 ? $"{Folder.Path} was removed." : $"the files it had written in {Folder.Path} were removed."));
            return WithLockNote(e);
        }
        Release();
        if (e is TrainingException && File.Exists(_checkpoints.LatestPath))
        {
            var kept = Checkpoint.ReadManifest(_checkpoints.LatestPath);
            e = new TrainingException($"{e.Message} The last checkpoint (step {kept.Step}, epoch {kept.Epoch}) was kept: {_checkpoints.LatestPath}");
        }
        return WithLockNote(e);
    }

    /// <summary>Creates <paramref name="folder"/>; returns the folders that did not exist, deepest first.</summary>
    private static List<string> CreateFolder(string folder)
    {
        var created = new List<string>();
        try
        {
            for (var d = new DirectoryInfo(Path.GetFullPath(folder)); d is not null && !d.Exists && !File.Exists(d.FullName); d = d.Parent)
                created.Add(d.FullName);
            Directory.CreateDirectory(folder);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or NotSupportedException)
        {
            var why = File.Exists(folder) ? "it is a file, not a folder" : e.Message;
            throw new TrainingException($"--out {folder}: cannot create the run folder ({why})");
        }
        return created;
    }

    private void RemoveCreated()
    {
        foreach (var d in _created)
        {
            try
            {
                if (Directory.Exists(d) && !Directory.EnumerateFileSystemEntries(d).Any()) Directory.Delete(d);
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
    }

    private void Release()
    {
        _lock?.Dispose();
        _lockLeftBehind ??= _lock?.LeftBehind;
        _lock = null;
    }

    /// <summary>
    /// A failure's exception, telling (when so) that the lock could not be removed and why that is harmless.
    /// </summary>
    private Exception WithLockNote(Exception e)
    {
        if (_lockLeftBehind is not { } why || e is not (TrainingException or CheckpointException or IOException or UnauthorizedAccessException)) return e;
        return new TrainingException($"{Runtime.ErrorText.OneLine(e.Message)} Its lock {RunLock.FileName} could not be removed ({why}); it names " +
            $"this process, so once the process has ended the next run in {Folder.Path} takes it over.");
    }

    /// <summary>Releases the folder's lock and the trainer.</summary>
    public void Dispose()
    {
        Trainer?.Dispose();
        Release();
    }
}
