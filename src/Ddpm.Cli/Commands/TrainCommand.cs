using System.CommandLine;
using System.Globalization;
using System.Runtime.InteropServices;
using Ddpm.Configuration;
using Ddpm.Distributed;
using Ddpm.Runs;
using Ddpm.Training;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm train</c>: parses the options into a <see cref="TrainingRunRequest"/>, runs it (<see cref="TrainingRun"/> owns
/// the folder, the loop and the files), draws the progress bar, turns SIGINT/SIGTERM into a stop (a checkpoint is saved,
/// exit 130 / 143) and prints how to resume. Under <c>mpirun -n N</c> it trains data-parallel.
/// </summary>
internal static class TrainCommand
{
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
        var resume = new Option<bool>("--resume") { Description = $"continue the run in --out from its {CheckpointFolder.LatestName}, with the checkpoint's config (only run-length keys may change)" };
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
            var o = new TrainOverrides(p.GetValue(epochs), p.GetValue(maxSteps), p.GetValue(batch), p.GetValue(lr), p.GetValue(seed));
            var given = configPath is null ? null : o.Apply(DdpmConfig.Load(configPath));
            var outDir = p.GetValue(output) ?? (given is not null ? Path.Combine("runs", given.Train.TaskName)
                : throw new UsageException("--resume without --config needs --out (the run folder)"));
            var request = new TrainingRunRequest { Folder = outDir, Config = given, Resume = isResume, Overwrite = isOverwrite, Adjust = o.Apply };
            var deviceGiven = p.GetResult(device) is { Implicit: false } ? p.GetValue(device).ToString() : null;
            return Run(request, CommonOptions.ResolveDevice(p.GetValue(device)), ResumeCommand(configPath, outDir, o, deviceGiven));
        });
        return cmd;
    }

    /// <summary>The command that continues this run exactly: the same config file and every override given.</summary>
    private static string ResumeCommand(string? configPath, string outDir, TrainOverrides o, string? device)
    {
        var parts = new List<string> { "ddpm", "train" };
        if (configPath is not null) parts.AddRange(["--config", Quote(configPath)]);
        parts.AddRange(["--out", Quote(outDir), "--resume"]);
        var inv = CultureInfo.InvariantCulture;
        if (o.Epochs is { } e) parts.AddRange(["--epochs", e.ToString(inv)]);
        if (o.MaxSteps is { } m) parts.AddRange(["--max-steps", m.ToString(inv)]);
        if (o.BatchSize is { } b) parts.AddRange(["--batch-size", b.ToString(inv)]);
        if (o.Lr is { } l) parts.AddRange(["--lr", l.ToString("R", inv)]);
        if (o.Seed is { } s) parts.AddRange(["--seed", s.ToString(inv)]);
        if (device is not null) parts.AddRange(["--device", Quote(device)]);
        return string.Join(' ', parts);
    }

    /// <summary>A word as a POSIX shell reads it back (single-quoted when it holds anything but safe characters).</summary>
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
        var result = run.Run(cancel.Token);
        bar.Finish();
        if (result.Stopped)
        {
            // Data parallel, a rank may stop because another one was signalled.
            var signal = interruptCode switch { InterruptedBySigterm => "SIGTERM", InterruptedBySigint => "SIGINT", _ => "a signal to another rank" };
            if (run.IsRoot)
                Console.Error.WriteLine($"interrupted by {signal} at step {result.Step}; checkpoint saved to {result.Checkpoint}. " +
                    $"Resume with: {(parallel is null ? "" : $"mpirun -n {parallel.Size} ")}{resumeCommand}");
            return interruptCode == 0 ? InterruptedBySigterm : interruptCode;
        }
        if (run.IsRoot) Console.WriteLine(result.Checkpoint);
        return CliApp.Ok;
    }
}
