using System.CommandLine;
using Ddpm.Evaluation;
using Ddpm.IO;
using Ddpm.Sampling;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm eval</c>: sample-quality metrics in the MNIST classifier's feature space (with anchors), the variational bound in
/// bits/dim, the loss curve, a sample grid and a class histogram; a table on the terminal and everything in eval.json.
/// </summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string?>("--checkpoint") { Description = "checkpoint written by 'ddpm train' (samples N images from it, and its likelihood)" };
        var images = new Option<string?>("--images") { Description = "evaluate this image folder or IDX file (1-channel 28×28) instead of sampling" };
        var num = new Option<int>("--num") { Description = "images to sample (must exceed the 84 feature dimensions)", DefaultValueFactory = _ => 500 };
        var seed = new Option<long>("--seed") { Description = "seed for sampling, the likelihood's noise and timesteps, and the real-image comparison", DefaultValueFactory = _ => 0 };
        var output = new Option<string>("--out") { Description = "output directory", DefaultValueFactory = _ => "eval" };
        var nll = CommonOptions.EnumOption("--nll", "variational bound: exact (T terms per image), estimate (K random terms) or none", NllMethod.Estimate, "likelihood method");
        var nllImages = new Option<int>("--nll-images") { Description = "MNIST test images the likelihood is measured on", DefaultValueFactory = _ => 100 };
        var nllTimesteps = new Option<int>("--nll-timesteps") { Description = "K, KL terms per image for --nll estimate", DefaultValueFactory = _ => 20 };
        var batch = new Option<int>("--batch-size") { Description = "images per sampling / likelihood batch", DefaultValueFactory = _ => 100 };
        var dataDir = new Option<string>("--data-dir") { Description = "MNIST folder, where the classifier and its anchors are cached", DefaultValueFactory = _ => "data/mnist" };
        var device = CommonOptions.DeviceOption();
        var guidance = new Option<double?>("--guidance") { Description = "class-conditional models: sample N/10 of each class with guidance w and report how often the classifier agrees" };
        var noEma = new Option<bool>("--no-ema") { Description = "use the raw weights even when the checkpoint has an EMA" };

        var cmd = new Command("eval", "Evaluate a checkpoint or an image set: classifier-space Fréchet distance, confidence, class balance, bits/dim, plots")
        {
            checkpoint, images, num, seed, output, nll, nllImages, nllTimesteps, batch, dataDir, device, guidance, noEma,
        };
        var sampler = new SamplerOptionSet(SamplerOptions.RecommendedKind, " (when sampling and in the likelihood's p_θ)");
        sampler.AddTo(cmd);
        cmd.SetAction(p => Run(new EvaluationOptions
        {
            Checkpoint = p.GetValue(checkpoint),
            Images = p.GetValue(images),
            Num = p.GetValue(num),
            Seed = p.GetValue(seed),
            Nll = p.GetValue(nll),
            NllImages = p.GetValue(nllImages),
            NllTimesteps = p.GetValue(nllTimesteps),
            BatchSize = p.GetValue(batch),
            Sampler = sampler.Read(p),
            Guidance = p.GetValue(guidance),
            UseEma = !p.GetValue(noEma),
            DataDir = p.GetValue(dataDir)!,
        }, p.GetValue(device), p.GetValue(output)!));
        return cmd;
    }

    /// <summary>Checks and loads (usage errors before any work), runs the <see cref="Evaluator"/>, writes its files, prints the table.</summary>
    private static int Run(EvaluationOptions options, DeviceChoice device, string outDir)
    {
        try { options.Validate(); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        PathCheck.EnsureWritableFolder(outDir, "--out"); // before the classifier, the sampling and the likelihood
        options = options with { Device = CommonOptions.ResolveDevice(device) };
        // mpirun (only): the samples split by index over the ranks; rank 0 gathers them, measures, writes and reports.
        var mpi = Ddpm.Distributed.MpiCommunicator.Current is { Size: > 1 } job ? job : null;
        if (mpi is { Rank: > 0 } && options.Images is not null) return CliApp.Ok; // nothing to sample: rank 0 measures the set
        Evaluator evaluator;
        try { evaluator = Evaluator.Open(options, mpi); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        using (evaluator)
        {
            if (mpi is { Rank: > 0 })
            {
                evaluator.SamplePart();
                return CliApp.Ok;
            }
            // One progress bar per phase of the evaluation (sampling, bits/dim).
            (ProgressLine Bar, string Phase)? current = null;
            using var result = evaluator.Run(Console.Error.WriteLine, e =>
            {
                if (current?.Phase != e.Phase)
                {
                    current?.Bar.Finish();
                    current = (new ProgressLine(), e.Phase);
                }
                current!.Value.Bar.Update(e.Done, e.Total, e.Detail);
            });
            current?.Bar.Finish();
            foreach (var line in EvaluationText.Report(result.SaveTo(outDir))) Console.WriteLine(line);
        }
        return CliApp.Ok;
    }
}
