using Ddpm.Imaging;
using Ddpm.Sampling;
using Ddpm.Training;

namespace Ddpm.Logging;

/// <summary>
/// A small sample grid of the model being trained: the per-epoch TensorBoard image and the runs page's picture
/// (<see cref="Runs.RunFolder.PreviewFile"/>).
/// </summary>
public static class TrainingPreview
{
    public const int DefaultCount = 16, DefaultSteps = 50;

    /// <summary>
    /// Algorithm 2 on min(<paramref name="steps"/>, T) uniformly respaced timesteps for <paramref name="count"/> images
    /// through <see cref="ImageGenerator"/>, from the EMA weights when the trainer keeps them (classes i mod K for a
    /// class-conditional model, unguided), with a fixed seed (train_params.seed) so that successive epochs show the
    /// same noise; writes the grid as a PNG and returns its path.
    /// </summary>
    public static string Write(Trainer trainer, string pngPath, int count = DefaultCount, int steps = DefaultSteps)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        var model = trainer.Ema?.Shadow ?? trainer.Model;
        var (config, diffusion) = (trainer.Config, trainer.Diffusion);
        bool wasTraining = model.training;
        try
        {
            // The parameters' own device (with its index): ImageGenerator's model.to() then copies nothing, so the
            // trainer's parameters (views of its flat buffers) stay the ones it trains. It puts the model in eval mode.
            using var generator = new ImageGenerator(model, diffusion, model.parameters().First().device);
            var request = new GenerationRequest
            {
                Count = count,
                Seed = config.Train.Seed,
                Sampler = new SamplerOptions { Steps = Math.Min(steps, diffusion.T) },
                Labels = model.IsConditional ? GenerationRequest.CyclingClasses(count, config.Model.NumClasses) : null,
            };
            using var result = generator.Generate(request);
            ImageGrid.SavePng(result.Images, (int)Math.Ceiling(Math.Sqrt(count)), pngPath);
            return pngPath;
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }
}
