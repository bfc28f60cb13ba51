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
        var config = new Option<string>("--config") { Description = "YAML config (the reference's schema)", Required = true };
        var device = CommonOptions.DeviceOption();
        var epochs = new Option<int?>("--epochs") { Description = "override train_params.num_epochs" };
        var maxSteps = new Option<long?>("--max-steps") { Description = "override train_params.max_steps (0 = no limit)" };
        var batch = new Option<int?>("--batch-size") { Description = "override train_params.batch_size" };
        var lr = new Option<double?>("--lr") { Description = "override train_params.lr" };
        var seed = new Option<long?>("--seed") { Description = "override train_params.seed" };
        var output = new Option<string?>("--out") { Description = "output directory (default: runs/<task_name>)" };
        var resume = new Option<bool>("--resume") { Description = $"continue from <out>/{CheckpointFile}" };

        var cmd = new Command("train", "Train the U-Net on the config's dataset (Algorithm 1)")
        {
            config, device, epochs, maxSteps, batch, lr, seed, output, resume,
        };
        cmd.SetAction(p =>
        {
            var cfg = DdpmConfig.Load(p.GetValue(config)!);
            cfg = ApplyOverrides(cfg, p.GetValue(epochs), p.GetValue(maxSteps), p.GetValue(batch), p.GetValue(lr), p.GetValue(seed));
            var outDir = p.GetValue(output) ?? Path.Combine("runs", cfg.Train.TaskName);
            return Run(cfg, CommonOptions.ResolveDevice(p.GetValue(device)!), outDir, p.GetValue(resume), p.GetValue(config)!);
        });
        return cmd;
    }

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

    private static int Run(DdpmConfig cfg, TorchSharp.torch.Device device, string outDir, bool resume, string configPath)
    {
        // Refuse a model or batch that cannot fit before loading data or allocating weights (resume checks its stored config).
        if (!resume) MemoryEstimate.EnsureFits(cfg, device);
        // mpirun: data parallel over the job's ranks; rank 0 alone writes (info is silent elsewhere).
        using var parallel = MpiCommunicator.Current is { } mpi ? DataParallel.Create(mpi, device) : null;
        bool root = parallel?.IsRoot ?? true;
        var info = root ? Console.Error : TextWriter.Null;
        Directory.CreateDirectory(outDir);
        var checkpoints = new CheckpointFolder(outDir, cfg.Train.KeepCheckpoints);
        var ckpt = checkpoints.LatestPath;
        if (resume && !File.Exists(ckpt)) throw new UsageException($"--resume: no checkpoint at {ckpt}");
        var loadClock = System.Diagnostics.Stopwatch.StartNew();
        if (parallel is not null && !root) parallel.Communicator.Any(false); // rank 0 loads (and fetches) first
        using var data = DatasetFactory.Load(cfg.Dataset, cfg.Model, new MnistSource { Log = info.WriteLine });
        if (parallel is not null && root) parallel.Communicator.Any(false);
        info.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"loaded {data.Count:N0} images from {data.Description} in {loadClock.Elapsed.TotalSeconds:F2} s, RSS {Environment.WorkingSet / 1048576.0:F0} MB"));

        var options = new TrainerOptions { Warn = root ? Console.Error.WriteLine : null, Parallel = parallel };
        // On resume the stored config rules, but for the run's length.
        var length = cfg.Train;
        using var trainer = resume
            ? Trainer.Resume(ckpt, device, stored => stored with
            {
                Train = stored.Train with { NumEpochs = length.NumEpochs, MaxSteps = length.MaxSteps },
            }, options)
            : Trainer.Create(cfg, device, options);
        if (resume) info.WriteLine($"resuming from {ckpt}: epoch {trainer.Epoch}, step {trainer.Step}");
        cfg = trainer.Config;
        if (cfg.Train.KeepCheckpoints != checkpoints.Keep) checkpoints = new CheckpointFolder(outDir, cfg.Train.KeepCheckpoints);
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
        var epochLog = root ? OpenLog(Path.Combine(outDir, "train_log.csv"), "epoch,step,mean_loss,seconds,images_per_s,rss_start_mb,rss_end_mb") : StreamWriter.Null;
        var stepLog = root ? OpenLog(Path.Combine(outDir, "loss.csv"), "step,loss") : StreamWriter.Null;
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
                    board?.Step(s, cfg.Train.Lr);
                    long remaining = (s.StepsInEpoch - s.StepInEpoch) * cfg.Train.BatchSize * (parallel?.Size ?? 1);
                    progress.Update(s.StepInEpoch, s.StepsInEpoch,
                        string.Create(CultureInfo.InvariantCulture, $"epoch {s.Epoch}/{cfg.Train.NumEpochs} loss {s.Loss:F4} {s.ImagesPerSecond:F1} img/s"),
                        s.ImagesPerSecond > 0 ? TimeSpan.FromSeconds(remaining / s.ImagesPerSecond) : null);
                }, cancel.Token);
                if (root) progress.Finish();
                if (report is null) break;
                if (root) checkpoints.Save(trainer.Step, trainer.Save);
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
                $"Resume with: {(parallel is null ? "" : $"mpirun -n {parallel.Size} ")}ddpm train --config {configPath} --out {outDir} --resume");
            return interruptCode == 0 ? InterruptedBySigterm : interruptCode;
        }
        if (root) Console.WriteLine(ckpt);
        return CliApp.Ok;
    }

    private static StreamWriter OpenLog(string path, string header)
    {
        bool exists = File.Exists(path) && new FileInfo(path).Length > 0;
        var w = new StreamWriter(path, append: true);
        if (!exists) w.WriteLine(header);
        return w;
    }
}
