using System.CommandLine;
using System.Globalization;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Training;

namespace Ddpm.Cli.Commands;

/// <summary><c>ddpm train</c>: Algorithm 1 with a progress bar, a CSV log and a checkpoint per epoch.</summary>
internal static class TrainCommand
{
    public const string CheckpointFile = "checkpoint.ckpt";

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
            return Run(cfg, CommonOptions.ResolveDevice(p.GetValue(device)!), outDir, p.GetValue(resume));
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

    private static int Run(DdpmConfig cfg, TorchSharp.torch.Device device, string outDir, bool resume)
    {
        Directory.CreateDirectory(outDir);
        var ckpt = Path.Combine(outDir, CheckpointFile);
        var loadClock = System.Diagnostics.Stopwatch.StartNew();
        using var data = DatasetFactory.Load(cfg.Dataset, cfg.Model, new MnistSource { Log = Console.Error.WriteLine });
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"loaded {data.Count:N0} images from {data.Description} in {loadClock.Elapsed.TotalSeconds:F2} s, RSS {Environment.WorkingSet / 1048576.0:F0} MB"));

        Trainer trainer;
        if (resume)
        {
            if (!File.Exists(ckpt)) throw new UsageException($"--resume: no checkpoint at {ckpt}");
            var overrides = cfg.Train;
            trainer = Trainer.Resume(ckpt, device, stored => stored with
            {
                Train = stored.Train with { NumEpochs = overrides.NumEpochs, MaxSteps = overrides.MaxSteps },
            });
            Console.Error.WriteLine($"resuming from {ckpt}: epoch {trainer.Epoch}, step {trainer.Step}");
        }
        else
        {
            trainer = Trainer.Create(cfg, device);
        }
        using var _ = trainer;
        cfg = trainer.Config;
        File.WriteAllText(Path.Combine(outDir, "config.yaml"), cfg.ToYaml());
        Console.Error.WriteLine($"training {trainer.Model.ParameterCount():N0} parameters on {data.Description} " +
            $"({data.Count:N0} images), device {device.type}, batch {cfg.Train.BatchSize}, " +
            $"{cfg.Train.NumEpochs} epochs{(cfg.Train.MaxSteps > 0 ? $", at most {cfg.Train.MaxSteps} steps" : "")} → {outDir}");

        using var cancel = new CancellationTokenSource();
        ConsoleCancelEventHandler onCancel = (_, e) => { e.Cancel = true; cancel.Cancel(); };
        Console.CancelKeyPress += onCancel;
        try
        {
            var epochLog = OpenLog(Path.Combine(outDir, "train_log.csv"), "epoch,step,mean_loss,seconds,images_per_s,rss_start_mb,rss_end_mb");
            var stepLog = OpenLog(Path.Combine(outDir, "loss.csv"), "step,loss");
            using (epochLog)
            using (stepLog)
            {
                var progress = new ProgressLine();
                while (!trainer.Finished && !cancel.IsCancellationRequested)
                {
                    var report = trainer.TrainEpoch(data, s =>
                    {
                        stepLog.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{s.Step},{s.Loss:G6}"));
                        long remaining = (s.StepsInEpoch - s.StepInEpoch) * cfg.Train.BatchSize;
                        progress.Update(s.StepInEpoch, s.StepsInEpoch,
                            string.Create(CultureInfo.InvariantCulture, $"epoch {s.Epoch}/{cfg.Train.NumEpochs} loss {s.Loss:F4} {s.ImagesPerSecond:F1} img/s"),
                            s.ImagesPerSecond > 0 ? TimeSpan.FromSeconds(remaining / s.ImagesPerSecond) : null);
                    }, cancel.Token);
                    progress.Finish();
                    if (report is null) break;
                    trainer.Save(ckpt);
                    epochLog.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"{report.Epoch},{report.Step},{report.MeanLoss:G6},{report.Seconds:F2},{report.ImagesPerSecond:F2},{report.RssStartBytes / 1048576.0:F1},{report.RssEndBytes / 1048576.0:F1}"));
                    epochLog.Flush();
                    stepLog.Flush();
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"epoch {report.Epoch}{(report.Complete ? "" : " (partial)")}: mean loss {report.MeanLoss:F4}, {report.Steps} steps in {report.Seconds:F1} s " +
                        $"({report.ImagesPerSecond:F1} img/s), RSS {report.RssStartBytes / 1048576.0:F0} → {report.RssEndBytes / 1048576.0:F0} MB; saved {ckpt}"));
                }
            }
        }
        finally
        {
            Console.CancelKeyPress -= onCancel;
        }
        if (cancel.IsCancellationRequested)
        {
            Console.Error.WriteLine($"interrupted at step {trainer.Step}; checkpoint saved. Resume with: ddpm train --config ... --out {outDir} --resume");
            return 130;
        }
        Console.WriteLine(ckpt);
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
