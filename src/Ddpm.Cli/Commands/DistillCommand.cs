using System.CommandLine.Parsing;
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
        var teacher = Opt<string?>("--teacher", "the teacher: a checkpoint from 'ddpm train' (its EMA weights)");
        var toSteps = Opt("--to-steps", "model calls per image of the final student, N", d.ToSteps);
        var method = EnumOption("--method", "progressive (Salimans & Ho 2022: rounds that halve the DDIM steps)", d.Method, "method");
        var output = Opt<string>("--out", "run folder: student-<N>.ckpt per round, checkpoint.ckpt, loss.csv, train_log.csv", required: true);
        var fromSteps = Opt<int?>("--from-steps", $"steps of the teacher's DDIM grid the first round starts from, N·2^k (default: N doubled up to at least {DistillationOptions.DefaultFromSteps})");
        var spacing = EnumOption("--spacing", "spacing of the teacher's DDIM grid; each student's grid is every 2nd, 4th, … point of it", d.Spacing, "spacing");
        var prediction = EnumOption("--student-prediction", "what the student outputs: v (the paper's choice), x0 or epsilon", d.StudentPrediction, "prediction");
        var guidance = Opt<double?>("--guidance", $"class-conditional teachers: the guidance weight w distilled (fixed, built into the student; default {DistillationOptions.DefaultGuidance.ToString(CultureInfo.InvariantCulture)})");
        var noClip = Opt<bool>("--no-clip-x0", "teacher steps without clipping x̂_0 to [-1, 1] (default: clipped, as 'ddpm eval --clip-x0')");
        var perRound = Opt("--steps-per-round", "optimizer steps per round", d.StepsPerRound);
        var batch = Opt("--batch-size", "images per step", d.BatchSize);
        var lr = Opt("--lr", "Adam's learning rate at the top of each round (then linear to 0)", d.Lr);
        var warmup = Opt("--warmup-steps", "lr warm-up steps at the start of each round", d.WarmupSteps);
        var ema = Opt("--ema-decay", "decay of the student's EMA (what is saved and teaches the next round)", d.EmaDecay);
        var dropout = Opt("--label-dropout", "share of steps on the null label (the student's unconditional model)", d.LabelDropout);
        var seed = Opt("--seed", "seed of the data order, steps and noise", d.Seed);
        var saveEvery = Opt("--save-every", "steps between checkpoints within a round", d.SaveEvery);
        var dataDir = Opt<string?>("--data-dir", "the dataset's folder (default: the teacher config's root)");
        var noEma = Opt<bool>("--no-ema", "distil the teacher's raw weights even when it has an EMA");
        var device = DeviceOption();
        var resume = Opt<bool>("--resume", "continue the run in --out from its checkpoint.ckpt (with its stored settings)");
        var overwrite = Opt<bool>("--overwrite", "replace the run already in --out");
        return Cmd("distill", "Distil a checkpoint into a few-step student (progressive distillation: 16 → 8 → 4 → 2 → 1 DDIM steps)",
            [teacher, toSteps, method, output, fromSteps, spacing, prediction, guidance, noClip, perRound, batch, lr, warmup, ema, dropout, seed,
             saveEvery, dataDir, noEma, device, resume, overwrite], p =>
        {
            bool isResume = p.GetValue(resume);
            if (p.GetValue(teacher) is null && !isResume) throw new UsageException("--teacher is required (only --resume may leave it out)");
            Option[] allowedOnResume = [output, resume, device, overwrite]; // --overwrite: refused by the run itself
            if (isResume && p.CommandResult.Children.OfType<OptionResult>().Any(r => !r.Implicit && !allowedOnResume.Contains(r.Option) && r.Option.Name != "--verbose"))
                throw new UsageException("--resume continues with the settings stored in the run's checkpoint: give only --out (and --device)");
            var options = new DistillationOptions
            {
                Method = p.GetValue(method), Teacher = p.GetValue(teacher) ?? "", ToSteps = p.GetValue(toSteps), FromSteps = p.GetValue(fromSteps),
                Spacing = p.GetValue(spacing), StudentPrediction = p.GetValue(prediction), Guidance = p.GetValue(guidance), ClipX0 = !p.GetValue(noClip),
                TeacherEma = !p.GetValue(noEma), StepsPerRound = p.GetValue(perRound), BatchSize = p.GetValue(batch), Lr = p.GetValue(lr),
                WarmupSteps = p.GetValue(warmup), EmaDecay = p.GetValue(ema), LabelDropout = p.GetValue(dropout), Seed = p.GetValue(seed),
                SaveEvery = p.GetValue(saveEvery), DataRoot = p.GetValue(dataDir),
            };
            return Run(new DistillationRequest(options, p.GetValue(output)!, isResume, p.GetValue(overwrite)), ResolveDevice(p.GetValue(device)));
        });
    }

    private static int Run(DistillationRequest request, TorchSharp.torch.Device device)
    {
        using var stop = new StopSignals();
        var progress = new ProgressLine();
        DistillationOutcome outcome;
        try
        {
            outcome = DistillationRun.Run(request, device, line =>
            {
                progress.Finish();
                Console.Error.WriteLine(line);
            }, s => progress.Update(s.StepInEpoch, s.StepsInEpoch, string.Create(CultureInfo.InvariantCulture,
                $"round {s.Epoch} loss {s.Loss:F5} {s.ImagesPerSecond:F1} img/s")), stop.Token);
        }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        progress.Finish();
        if (outcome.Interrupted)
        {
            Console.Error.WriteLine($"interrupted; resume with: ddpm distill --out {request.OutDir} --resume");
            return stop.ExitCode(StopSignals.Sigint);
        }
        var written = string.Join(", ", outcome.Students.OrderByDescending(s => s.Key).Select(s => $"{s.Key} step(s) {s.Value}"));
        Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture, $"distilled in {outcome.Seconds:F1} s ({outcome.Step} steps): ") + written);
        Console.WriteLine(outcome.Students.OrderBy(s => s.Key).First().Value);
        return CliApp.Ok;
    }
}
