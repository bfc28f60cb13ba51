using System.CommandLine;
using System.CommandLine.Parsing;
using System.Globalization;
using System.Runtime.InteropServices;
using Ddpm.Distillation;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm distill</c>: a trained checkpoint into a few-step student (<see cref="DistillationRun"/>), one
/// <c>student-&lt;N&gt;.ckpt</c> per round. SIGINT and SIGTERM finish the current step, save the state and exit 130 /
/// 143; <c>--resume</c> continues bit for bit.
/// </summary>
internal static class DistillCommand
{
    public static Command Create()
    {
        var d = new DistillationOptions();
        var inv = CultureInfo.InvariantCulture;
        var teacher = new Option<string?>("--teacher")
        {
            Description = "the teacher: a checkpoint from 'ddpm train' (its EMA weights)",
        };
        var toSteps = Option("--to-steps", "model calls per image of the final student, N", d.ToSteps);
        var method = CommonOptions.EnumOption("--method",
            "progressive (Salimans & Ho 2022: rounds that halve the DDIM steps)", d.Method, "method");
        var output = new Option<string>("--out")
        {
            Description = "run folder: student-<N>.ckpt per round, checkpoint.ckpt, loss.csv, train_log.csv",
            Required = true,
        };
        var fromSteps = new Option<int?>("--from-steps")
        {
            Description = "steps of the teacher's DDIM grid the first round starts from, N·2^k " +
                $"(default: N doubled up to at least {DistillationOptions.DefaultFromSteps})",
        };
        var spacing = CommonOptions.EnumOption("--spacing",
            "spacing of the teacher's DDIM grid; each student's grid is every 2nd, 4th, … point of it", d.Spacing,
            "spacing");
        var prediction = CommonOptions.EnumOption("--student-prediction",
            "what the student outputs: v (the paper's choice), x0 or epsilon", d.StudentPrediction, "prediction");
        var guidance = new Option<double?>("--guidance")
        {
            Description = "class-conditional teachers: the guidance weight w distilled (fixed, built into the " +
                $"student; default {DistillationOptions.DefaultGuidance.ToString(inv)})",
        };
        var noClip = new Option<bool>("--no-clip-x0")
        {
            Description = "teacher steps without clipping x̂_0 to [-1, 1] (default: clipped, as 'ddpm eval --clip-x0')",
        };
        var perRound = Option("--steps-per-round", "optimizer steps per round", d.StepsPerRound);
        var batch = Option("--batch-size", "images per step", d.BatchSize);
        var lr = Option("--lr", "Adam's learning rate at the top of each round (then linear to 0)", d.Lr);
        var warmup = Option("--warmup-steps", "lr warm-up steps at the start of each round", d.WarmupSteps);
        var ema = Option("--ema-decay", "decay of the student's EMA (what is saved and teaches the next round)",
            d.EmaDecay);
        var dropout = Option("--label-dropout", "share of steps on the null label (the student's unconditional model)",
            d.LabelDropout);
        var seed = Option("--seed", "seed of the data order, steps and noise", d.Seed);
        var saveEvery = Option("--save-every", "steps between checkpoints within a round", d.SaveEvery);
        var dataDir = new Option<string?>("--data-dir")
        {
            Description = "the dataset's folder (default: the teacher config's root)",
        };
        var noEma = new Option<bool>("--no-ema")
        {
            Description = "distil the teacher's raw weights even when it has an EMA",
        };
        var device = CommonOptions.DeviceOption();
        var resume = new Option<bool>("--resume")
        {
            Description = "continue the run in --out from its checkpoint.ckpt (with its stored settings)",
        };
        var overwrite = new Option<bool>("--overwrite") { Description = "replace the run already in --out" };

        var cmd = new Command("distill",
            "Distil a checkpoint into a few-step student (progressive distillation: 16 → 8 → 4 → 2 → 1 DDIM steps)")
        {
            teacher, toSteps, method, output, fromSteps, spacing, prediction, guidance, noClip, perRound, batch, lr,
            warmup, ema, dropout, seed, saveEvery, dataDir, noEma, device, resume, overwrite,
        };
        cmd.SetAction(p =>
        {
            bool isResume = p.GetValue(resume);
            if (isResume && p.GetValue(overwrite))
                throw new UsageException(
                    "--resume continues the run in --out and --overwrite replaces it: give one of them");
            var teacherPath = p.GetValue(teacher);
            if (teacherPath is null && !isResume)
                throw new UsageException("--teacher is required (only --resume may leave it out)");
            Option[] allowedOnResume = [output, resume, device];
            if (isResume && p.CommandResult.Children.OfType<OptionResult>()
                    .Any(r => !r.Implicit && !allowedOnResume.Contains(r.Option) && r.Option.Name != "--verbose"))
                throw new UsageException("--resume continues with the settings stored in the run's checkpoint: " +
                    "give only --out (and --device)");
            var options = new DistillationOptions
            {
                Method = p.GetValue(method),
                Teacher = teacherPath ?? "",
                ToSteps = p.GetValue(toSteps),
                FromSteps = p.GetValue(fromSteps),
                Spacing = p.GetValue(spacing),
                StudentPrediction = p.GetValue(prediction),
                Guidance = p.GetValue(guidance),
                ClipX0 = !p.GetValue(noClip),
                TeacherEma = !p.GetValue(noEma),
                StepsPerRound = p.GetValue(perRound),
                BatchSize = p.GetValue(batch),
                Lr = p.GetValue(lr),
                WarmupSteps = p.GetValue(warmup),
                EmaDecay = p.GetValue(ema),
                LabelDropout = p.GetValue(dropout),
                Seed = p.GetValue(seed),
                SaveEvery = p.GetValue(saveEvery),
                DataRoot = p.GetValue(dataDir),
            };
            var request = new DistillationRequest(options, p.GetValue(output)!, isResume, p.GetValue(overwrite));
            return Run(request, CommonOptions.ResolveDevice(p.GetValue(device)));
        });
        return cmd;
    }

    private static Option<T> Option<T>(string name, string description, T defaultValue) =>
        new(name) { Description = description, DefaultValueFactory = _ => defaultValue };

    private static int Run(DistillationRequest request, TorchSharp.torch.Device device)
    {
        using var cancel = new CancellationTokenSource();
        int interruptCode = 0;
        // Both signals only request a stop: the step finishes, the state is saved, then the exit code says which.
        void OnSignal(PosixSignalContext context)
        {
            context.Cancel = true;
            int code = context.Signal == PosixSignal.SIGTERM
                ? TrainCommand.InterruptedBySigterm
                : TrainCommand.InterruptedBySigint;
            Interlocked.CompareExchange(ref interruptCode, code, 0);
            cancel.Cancel();
        }
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        var progress = new ProgressLine();
        void OnStep(Ddpm.Training.StepReport s)
        {
            var left = s.ImagesPerSecond > 0
                ? TimeSpan.FromSeconds((s.StepsInEpoch - s.StepInEpoch) * request.Options.BatchSize / s.ImagesPerSecond)
                : (TimeSpan?)null;
            var text = string.Create(CultureInfo.InvariantCulture,
                $"round {s.Epoch} loss {s.Loss:F5} {s.ImagesPerSecond:F1} img/s");
            progress.Update(s.StepInEpoch, s.StepsInEpoch, text, left);
        }
        DistillationOutcome outcome;
        try
        {
            outcome = DistillationRun.Run(request, device, line =>
            {
                progress.Finish();
                Console.Error.WriteLine(line);
            }, OnStep, cancel.Token);
        }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        progress.Finish();
        if (outcome.Interrupted)
        {
            Console.Error.WriteLine($"interrupted; resume with: ddpm distill --out {request.OutDir} --resume");
            return interruptCode == 0 ? TrainCommand.InterruptedBySigint : interruptCode;
        }
        var written = string.Join(", ",
            outcome.Students.OrderByDescending(s => s.Key).Select(s => $"{s.Key} step(s) {s.Value}"));
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"distilled in {outcome.Seconds:F1} s ({outcome.Step} steps): ") + written);
        Console.WriteLine(outcome.Students.OrderBy(s => s.Key).First().Value);
        return CliApp.Ok;
    }
}
