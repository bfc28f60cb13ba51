using Ddpm.Evaluation;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm eval</c>: sample quality in the MNIST classifier's feature space (with anchors), bits/dim, the loss curve,
/// a sample grid and a class histogram; a table on the terminal, everything in eval.json.
/// </summary>
internal static class EvalCommand
{
    public static Command Create()
    {
        var checkpoint = Opt<string?>("--checkpoint", "checkpoint written by 'ddpm train' (samples N images from it, and its likelihood)");
        var images = Opt<string?>("--images", "evaluate this image folder or IDX file (1-channel 28×28) instead of sampling");
        var num = Opt("--num", "images to sample (must exceed the 84 feature dimensions)", 500);
        var seed = Opt("--seed", "seed for sampling, the likelihood's noise and timesteps, and the real-image comparison", 0L);
        var output = Opt("--out", "output directory", "eval");
        var nll = EnumOption("--nll", "variational bound: exact (T terms per image), estimate (K random terms) or none", NllMethod.Estimate, "likelihood method");
        var nllImages = Opt("--nll-images", "MNIST test images the likelihood is measured on", 100);
        var nllTimesteps = Opt("--nll-timesteps", "K, KL terms per image for --nll estimate", 20);
        var batch = Opt("--batch-size", "images per sampling / likelihood batch", 100);
        var dataDir = Opt("--data-dir", "MNIST folder, where the classifier and its anchors are cached", "data/mnist");
        var device = DeviceOption();
        var guidance = Opt<double?>("--guidance", "class-conditional models: sample N/10 of each class with guidance w and report how often the classifier agrees");
        var noEma = Opt<bool>("--no-ema", "use the raw weights even when the checkpoint has an EMA");
        var sampler = new SamplerOptionSet(SamplerOptions.RecommendedKind, " (when sampling and in the likelihood's p_θ)");
        return Cmd("eval", "Evaluate a checkpoint or an image set: classifier-space Fréchet distance, confidence, class balance, bits/dim, plots",
            [checkpoint, images, num, seed, output, nll, nllImages, nllTimesteps, batch, dataDir, device, guidance, noEma, .. sampler.All], p =>
        {
            var options = new EvaluationOptions
            {
                Checkpoint = p.GetValue(checkpoint), Images = p.GetValue(images), Num = p.GetValue(num), Seed = p.GetValue(seed), Nll = p.GetValue(nll),
                NllImages = p.GetValue(nllImages), NllTimesteps = p.GetValue(nllTimesteps), BatchSize = p.GetValue(batch), Sampler = sampler.Read(p),
                Guidance = p.GetValue(guidance), UseEma = !p.GetValue(noEma), DataDir = p.GetValue(dataDir)!, Device = ResolveDevice(p.GetValue(device)),
            };
            var bar = new ProgressLine(); // one bar per phase (sampling, bits/dim)
            var report = Evaluator.Evaluate(options, p.GetValue(output)!, Ddpm.Distributed.MpiCommunicator.Current, Console.Error.WriteLine,
                e => bar.Update(e.Phase, e.Done, e.Total, e.Detail));
            bar.Finish();
            foreach (var line in report is null ? [] : EvaluationText.Report(report)) Console.WriteLine(line);
            return CliApp.Ok;
        });
    }
}
