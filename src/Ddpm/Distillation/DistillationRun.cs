using System.Globalization;
using Ddpm.Data;
using Ddpm.Imaging;
using Ddpm.IO;
using Ddpm.Runs;
using Ddpm.Sampling;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Distillation;

/// <summary>
/// What one <c>ddpm distill</c> asks: the settings (ignored on resume: the checkpoint holds them), the run folder, and
/// how.
/// </summary>
public sealed record DistillationRequest(DistillationOptions Options, string OutDir, bool Resume = false,
    bool Overwrite = false);

/// <summary>
/// How a distillation run ended: the students written (steps → path) and whether a stop request ended it early.
/// </summary>
public sealed record DistillationOutcome(IReadOnlyDictionary<int, string> Students, bool Interrupted, long Step,
    double Seconds);

/// <summary>
/// A distillation run in its folder, the one entry point of <c>ddpm distill</c>, on the run layer: the folder's files
/// are <see cref="RunFolder"/>'s (<c>config.yaml</c>, <c>loss.csv</c> per step, <c>train_log.csv</c> per round with the
/// round as its epoch, <c>preview.png</c>, <c>checkpoint.ckpt</c>, the lock) plus <c>student-&lt;N&gt;.ckpt</c> and a
/// 100-image <c>student-&lt;N&gt;.png</c> per round. A fresh run claims the folder (refusing another run's files unless
/// overwriting), a resume continues from <c>checkpoint.ckpt</c>; the state is saved every
/// <see cref="DistillationOptions.SaveEvery"/> steps, at each round's end and on a stop request. A fresh run that saved
/// nothing leaves nothing behind.
/// </summary>
public static class DistillationRun
{
    private const string StudentPrefix = "student-";

    /// <summary>The distilled checkpoint of <paramref name="steps"/> steps in <paramref name="folder"/>.</summary>
    public static string StudentPath(string folder, int steps) =>
        Path.Combine(folder,
            string.Create(CultureInfo.InvariantCulture, $"{StudentPrefix}{steps}{CheckpointFolder.Extension}"));

    /// <summary>
    /// Runs (or resumes) the distillation described by <paramref name="request"/> until its last round is done or
    /// <paramref name="cancel"/> is set (then the state is saved and the outcome says so).
    /// </summary>
    /// <exception cref="ArgumentException">Settings that do not fit the teacher.</exception>
    /// <exception cref="RunRequestException">The request does not fit the folder (a run already there, nothing to
    /// resume, a missing teacher).</exception>
    /// <exception cref="RunLockedException">Another run holds the folder.</exception>
    public static DistillationOutcome Run(DistillationRequest request, Device device, Action<string>? log = null,
        Action<StepReport>? onStep = null, CancellationToken cancel = default)
    {
        if (request.Resume && request.Overwrite) throw new RunRequestException(RunRequestException.ResumeOrOverwrite);
        var folder = new RunFolder(request.OutDir);
        var latest = folder.LatestCheckpointPath;
        if (request.Resume && !File.Exists(latest))
            throw new RunRequestException($"--resume: no distillation checkpoint at {latest}");
        if (!request.Resume)
        {
            request.Options.Validate();
            if (!File.Exists(request.Options.Teacher))
                throw new RunRequestException($"--teacher: no checkpoint at {request.Options.Teacher}");
        }
        bool created = !Directory.Exists(folder.Path);
        Directory.CreateDirectory(folder.Path);
        var runLock = RunLock.Acquire(folder.Path);
        bool saved = request.Resume, claimed = false;
        try
        {
            if (!request.Resume) Claim(folder, request.Overwrite, log);
            claimed = true;
            return Distil(request, folder, device, log, onStep, () => saved = true, cancel);
        }
        catch when (!saved)
        {
            // Nothing of this run is worth keeping: remove what it wrote (once the folder was its), and the folder it
            // made.
            if (claimed) RemoveRun(folder);
            runLock.Dispose();
            if (created && !Directory.EnumerateFileSystemEntries(folder.Path).Any()) Directory.Delete(folder.Path);
            throw;
        }
        finally
        {
            runLock.Dispose();
        }
    }

    private static DistillationOutcome Distil(DistillationRequest request, RunFolder folder, Device device,
        Action<string>? log, Action<StepReport>? onStep, Action onSaved, CancellationToken cancel)
    {
        var checkpoints = folder.Checkpoints(keep: 0);
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var run = request.Resume
            ? ResumeIn(folder, checkpoints.LatestPath, device)
            : ProgressiveDistillation.Start(request.Options, device);
        var o = run.Options;
        if (request.Resume)
            log?.Invoke($"resuming {checkpoints.LatestPath}: round {run.Round} of {run.Rounds}, " +
                $"step {run.StepInRound} of {o.StepsPerRound}{(run.Finished ? " (finished)" : "")}");
        var config = run.StudentConfig;
        using var data = DatasetFactory.Load(config.Dataset, config.Model, new MnistSource { Log = log });
        AtomicFile.WriteAllText(folder.ConfigPath, config.ToYaml());
        var prediction = Configuration.EnumNames.Name(o.StudentPrediction);
        log?.Invoke(string.Create(CultureInfo.InvariantCulture,
            $"distilling {o.Teacher} (step {run.OriginalTeacherStep}) from DDIM-{run.FirstGrid.Count} to " +
            $"{o.ToSteps} step(s) in {run.Rounds} round(s) of {o.StepsPerRound} steps, batch {o.BatchSize}, " +
            $"{prediction}-prediction student{(run.Guidance > 0 ? $", guidance w = {run.Guidance} built in" : "")}, " +
            $"on {data.Count:N0} images from {data.Description} → {folder.Path}"));

        // A fresh run starts its logs; a resumed one continues them from its checkpoint's step.
        long? continueAt = request.Resume ? run.Step : null;
        using var stepLog = folder.OpenStepLog(continueAt);
        using var roundLog = folder.OpenEpochLog(continueAt);
        var students = new SortedDictionary<int, string>();
        for (int r = 1; r < run.Round; r++)
        {
            int steps = run.FirstGrid.Count >> r;
            students[steps] = StudentPath(folder.Path, steps);
        }
        DistillationOutcome Outcome(bool interrupted) =>
            new(students, interrupted, run.Step, clock.Elapsed.TotalSeconds);
        void Save()
        {
            checkpoints.Save(run.Step, run.Save);
            onSaved();
        }
        while (true)
        {
            if (run.RoundFinished && run.Round < run.Rounds)
            {
                if (cancel.IsCancellationRequested) // the finished round is saved; the next one starts on resume
                {
                    log?.Invoke($"stopped after round {run.Round} (step {run.Step}); " +
                        $"state saved to {checkpoints.LatestPath}");
                    return Outcome(interrupted: true);
                }
                var teacher = StudentPath(folder.Path, run.Target.StudentSteps);
                if (!File.Exists(teacher))
                    throw new CheckpointException(teacher,
                        $"is missing: round {run.Round}'s student teaches the next round");
                run.NextRound(teacher);
                Save();
            }
            var report = run.TrainRound(data, s =>
            {
                stepLog.WriteLine(RunFolder.StepLogRow(s));
                onStep?.Invoke(s);
            }, cancel, o.SaveEvery, Save);
            stepLog.Flush();
            if (!run.RoundFinished)
            {
                Save();
                log?.Invoke($"stopped at step {run.Step} (round {run.Round}, step {run.StepInRound} of " +
                    $"{o.StepsPerRound}); state saved to {checkpoints.LatestPath}");
                return Outcome(interrupted: true);
            }
            int n = run.Target.StudentSteps;
            var studentPath = StudentPath(folder.Path, n);
            if (report is not null)
            {
                // (A resumed run whose round had already ended, report null, wrote this student before its state.)
                run.SaveStudent(studentPath);
                WritePreview(run, Path.ChangeExtension(studentPath, ".png"), folder.PreviewPath);
                roundLog.WriteLine(RunFolder.EpochLogRow(report));
                roundLog.Flush();
                Save();
                log?.Invoke(string.Create(CultureInfo.InvariantCulture,
                    $"round {run.Round}/{run.Rounds}: {n}-step student, mean loss {report.MeanLoss:F5}, " +
                    $"{report.Steps} steps in {report.Seconds:F1} s ({report.ImagesPerSecond:F1} img/s); " +
                    $"saved {studentPath}"));
            }
            students[n] = studentPath;
            if (run.Finished) return Outcome(interrupted: false);
        }
    }

    /// <summary>
    /// Resumes with the round's teacher: the original teacher in round 1, else the previous round's student in the
    /// folder.
    /// </summary>
    private static ProgressiveDistillation ResumeIn(RunFolder folder, string checkpoint, Device device)
    {
        var state = Checkpoint.ReadManifest(checkpoint).Distillation ?? throw new CheckpointException(checkpoint,
            "is not a distillation checkpoint (its manifest has no distillation state)");
        var teacher = state.Round == 1
            ? state.Options.Teacher
            : StudentPath(folder.Path, state.TeacherTimesteps.Length);
        return ProgressiveDistillation.Resume(checkpoint, teacher, device);
    }

    /// <summary>The students (checkpoints and grids) in the folder.</summary>
    private static IEnumerable<string> StudentFiles(RunFolder folder) =>
        Directory.EnumerateFiles(folder.Path, StudentPrefix + "*")
            .Where(f => f.EndsWith(CheckpointFolder.Extension, StringComparison.Ordinal)
                || f.EndsWith(".png", StringComparison.Ordinal));

    /// <summary>
    /// A fresh run needs a folder without another run's files: refuse, or with overwrite remove them.
    /// </summary>
    private static void Claim(RunFolder folder, bool overwrite, Action<string>? log)
    {
        var files = folder.RunFiles().Concat(StudentFiles(folder)).ToList();
        if (files.Count == 0) return;
        if (!overwrite)
            throw new RunRequestException($"{folder.Path} already holds a run ({files.Count} file(s), e.g. " +
                $"{Path.GetFileName(files[0])}); continue it with --resume, choose a new --out, or pass --overwrite " +
                "to replace it");
        RemoveRun(folder);
        log?.Invoke($"--overwrite: removed {files.Count} file(s) of the earlier run in {folder.Path}");
    }

    private static void RemoveRun(RunFolder folder)
    {
        foreach (var f in StudentFiles(folder).ToList()) File.Delete(f);
        folder.RemoveRun();
    }

    /// <summary>
    /// 100 images from the round's student (EMA weights; classes i mod 10 with its guidance when conditional), as a
    /// grid: the student's own, and the run's preview.
    /// </summary>
    private static void WritePreview(ProgressiveDistillation run, string path, string previewPath)
    {
        using var generator =
            new ImageGenerator(run.StudentEma, run.StudentDiffusion, run.Device) { Distilled = run.Grid };
        int classes = run.StudentConfig.Model.NumClasses;
        using var result = generator.Generate(new GenerationRequest
        {
            Count = 100,
            Labels = classes > 0 ? GenerationRequest.CyclingClasses(100, classes) : null,
            Guidance = classes > 0 ? run.Guidance : 0,
        });
        var png = ImageGrid.ToPng(result.Images, 10);
        AtomicFile.WriteAllBytes(path, png);
        AtomicFile.WriteAllBytes(previewPath, png);
    }
}
