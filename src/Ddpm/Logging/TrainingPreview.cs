using Ddpm.Diffusion;
using Ddpm.Imaging;
using Ddpm.Sampling;
using Ddpm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Logging;

/// <summary>A small sample grid of the model being trained: the per-epoch TensorBoard image and the runs page's picture.</summary>
public static class TrainingPreview
{
    /// <summary>The grid's file name in the run folder.</summary>
    public const string FileName = "preview.png";
    public const int DefaultCount = 16, DefaultSteps = 50;

    /// <summary>
    /// Algorithm 2 on min(<paramref name="steps"/>, T) uniformly respaced timesteps for <paramref name="count"/> images,
    /// from the EMA weights when the trainer keeps them (classes i mod K for a class-conditional model, unguided), with a
    /// fixed seed (train_params.seed) so that successive epochs show the same noise; writes the grid as a PNG and returns its path.
    /// </summary>
    public static string Write(Trainer trainer, string pngPath, int count = DefaultCount, int steps = DefaultSteps)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(steps, 1);
        var model = trainer.Ema?.Shadow ?? trainer.Model;
        var (config, device, diffusion) = (trainer.Config, trainer.Device, trainer.Diffusion);
        bool wasTraining = model.training;
        model.eval();
        try
        {
            using var scope = NewDisposeScope();
            var sampler = new SamplerOptions { Steps = Math.Min(steps, diffusion.T) }.Create(diffusion.Schedule);
            NoisePredictor predictor = model.IsConditional
                ? ClassifierFreeGuidance.Guided(model, arange(count, dtype: int64, device: device).remainder(config.Model.NumClasses), 0, diffusion.EpsFromOutput)
                : diffusion.AsEpsPredictor((x, t) => model.forward(x, t));
            using var generator = new Generator((ulong)config.Train.Seed, new Device("cpu"));
            var xT = randn([count, config.Model.ImChannels, config.Model.ImSize, config.Model.ImSize], dtype: float32, generator: generator).to(device);
            // Step noise from the CPU generator on the CPU; on a GPU from the device's default generator (training draws on the CPU).
            var images = SamplingLoop.Run(sampler, predictor, xT, device.type == DeviceType.CPU ? generator : null);
            ImageGrid.SavePng(images, (int)Math.Ceiling(Math.Sqrt(count)), pngPath);
            return pngPath;
        }
        finally
        {
            if (wasTraining) model.train();
        }
    }
}
