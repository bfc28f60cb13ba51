using Ddpm.Distributed;
using Ddpm.Runs;
using Ddpm.Training;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm train</c>: runs a <see cref="TrainingRun"/> (the folder, the loop, the files) with a progress bar; SIGINT
/// or SIGTERM saves a checkpoint and exits 130 / 143 with how to resume. Under <c>mpirun -n N</c>: data-parallel.
/// </summary>
internal static class TrainCommand
{
    public static Command Create()
    {
        var config = Opt<string?>("--config", "YAML config (the reference's schema); with --resume optional (the checkpoint holds it) and, when given, checked against the checkpoint's");
        var device = DeviceOption();
        var epochs = Opt<int?>("--epochs", "override train_params.num_epochs");
        var maxSteps = Opt<long?>("--max-steps", "override train_params.max_steps (0 = no limit)");
        var batch = Opt<int?>("--batch-size", "override train_params.batch_size");
        var lr = Opt<double?>("--lr", "override train_params.lr");
        var seed = Opt<long?>("--seed", "override train_params.seed");
        var output = Opt<string?>("--out", "output directory (default: runs/<task_name>)");
        var resume = Opt<bool>("--resume", $"continue the run in --out from its {CheckpointFolder.LatestName}, with the checkpoint's config (only run-length keys may change)");
        var overwrite = Opt<bool>("--overwrite", "replace the run already in --out (its checkpoints, logs and config.yaml)");
        return Cmd("train", "Train the U-Net on the config's dataset (Algorithm 1)", [config, device, epochs, maxSteps, batch, lr, seed, output, resume, overwrite], p =>
        {
            bool isResume = p.GetValue(resume), isOverwrite = p.GetValue(overwrite);
            var configPath = p.GetValue(config);
            if (configPath is null && !isResume)
                throw new UsageException("--config is required (only --resume may leave it out: the checkpoint holds the config)");
            var o = new TrainOverrides(p.GetValue(epochs), p.GetValue(maxSteps), p.GetValue(batch), p.GetValue(lr), p.GetValue(seed));
            var given = configPath is null ? null : o.Apply(DdpmConfig.Load(configPath));
            var outDir = p.GetValue(output) ?? (given is not null ? Path.Combine("runs", given.Train.TaskName)
                : throw new UsageException("--resume without --config needs --out (the run folder)"));
            var request = new TrainingRunRequest { Folder = outDir, Config = given, Resume = isResume, Overwrite = isOverwrite, Adjust = o.Apply };
            var deviceGiven = p.GetResult(device) is { Implicit: false } ? p.GetValue(device).ToString() : null;
            return Run(request, ResolveDevice(p.GetValue(device)), ResumeCommand(configPath, outDir, o, deviceGiven));
        });
    }

    /// <summary>The command that continues this run exactly: the same config file and every override given.</summary>
    private static string ResumeCommand(string? configPath, string outDir, TrainOverrides o, string? device) =>
        $"ddpm train{(configPath is null ? "" : $" --config {Quote(configPath)}")} --out {Quote(outDir)} --resume" +
        string.Concat(o.Arguments().Select(a => " " + a)) + (device is null ? "" : $" --device {Quote(device)}");

    /// <summary>A word as a POSIX shell reads it back (single-quoted unless all its characters are safe).</summary>
    private static string Quote(string word) =>
        word.Length > 0 && word.All(c => char.IsAsciiLetterOrDigit(c) || "-_./:=+@%,".Contains(c)) ? word : "'" + word.Replace("'", "'\\''") + "'";

    private static int Run(TrainingRunRequest request, TorchSharp.torch.Device device, string resumeCommand)
    {
        // mpirun: data parallel over the job's ranks (the run's rank 0 alone owns the folder and reports).
        using var parallel = MpiCommunicator.Current is { } mpi ? DataParallel.Create(mpi, device) : null;
        var bar = new ProgressLine();
        var progress = new Reporter<TrainingProgress>(e =>
        {
            switch (e)
            {
                case TrainingNote n: Console.Error.WriteLine(n.Text); break;
                case TrainingStepDone s:
                    bar.Update(s.Done, s.Total, string.Create(CultureInfo.InvariantCulture,
                        $"epoch {s.Step.Epoch}/{s.Epochs} loss {s.Step.Loss:F4} {s.Step.ImagesPerSecond:F1} img/s"), s.Eta);
                    break;
                case TrainingEpochDone { Report: var r } d:
                    bar.Finish();
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"epoch {r.Epoch}{(r.Complete ? "" : " (partial)")}: mean loss {r.MeanLoss:F4}, {r.Steps} steps in {r.Seconds:F1} s " +
                        $"({r.ImagesPerSecond:F1} img/s), RSS {r.RssStartBytes / 1048576.0:F0} → {r.RssEndBytes / 1048576.0:F0} MB; saved {d.Checkpoint}"));
                    break;
            }
        });
        using var run = TrainingRun.Open(request, device, new TrainerOptions { Parallel = parallel }, progress);
        // Both signals request a stop: the step finishes, a checkpoint is written, the exit code says which.
        using var stop = new StopSignals();
        var result = run.Run(stop.Token);
        bar.Finish();
        if (result.Stopped)
        {
            if (run.IsRoot) // data parallel, a rank may stop because another one was signalled
                Console.Error.WriteLine($"interrupted by {stop.Name ?? "a signal to another rank"} at step {result.Step}; checkpoint saved to " +
                    $"{result.Checkpoint}. Resume with: {(parallel is null ? "" : $"mpirun -n {parallel.Size} ")}{resumeCommand}");
            return stop.ExitCode();
        }
        if (run.IsRoot) Console.WriteLine(result.Checkpoint);
        return CliApp.Ok;
    }
}
