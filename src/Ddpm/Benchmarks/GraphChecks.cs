using System.Globalization;
using Ddpm.Configuration;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Benchmarks;

/// <summary>
/// CUDA graphs against eager runs, for a device check (<c>ddpm bench --verify-graphs</c>): the sampling forward, and
/// the graphed training step (<see cref="GraphedTrainingStep"/>, which <c>ddpm train</c> does not run).
/// </summary>
internal static class GraphChecks
{
    /// <summary>The sampling forward at t = 500 on one batch of noise, replayed from a CUDA graph and eagerly: the
    /// largest difference.</summary>
    public static string Sampling(ImageGenerator generator, int batch)
    {
        using var scope = NewDisposeScope();
        using var forward = GraphedForward.Create(generator.Model);
        using var noise = new Generator(3, new Device("cpu"));
        var x = randn([batch, .. generator.ImageShape], generator: noise).to(generator.Device);
        var t = full(batch, 500L, dtype: int64, device: generator.Device);
        using var noGrad = no_grad();
        var graphed = forward.Forward(x, t);
        var eager = generator.Model.forward(x, t);
        return string.Format(CultureInfo.InvariantCulture, "sampling forward ({0} images, t = 500, {1}): max |Δ| {2:E2}, max |ε| {3:F3}",
            batch, forward.Description, (graphed - eager).abs().max().item<float>(), eager.abs().max().item<float>());
    }

    /// <summary>
    /// <paramref name="steps"/> training steps from the same start and batch, eagerly (the trainer) and replayed from a
    /// CUDA graph: the largest weight difference afterwards, and the Adam step counts.
    /// </summary>
    public static string Training(DdpmConfig config, Device device, int steps)
    {
        using var eager = Trainer.Create(config, device);
        using var graphedTrainer = Trainer.Create(config, device);
        using var graphed = GraphedTrainingStep.For(graphedTrainer);
        var (x0, labels) = Benchmark.RandomBatch(config, device, seed: 2);
        using (x0)
        using (labels)
        {
            for (int i = 0; i < steps; i++)
            {
                using var scope = NewDisposeScope();
                eager.TrainBatch(x0, labels);
                graphed.Run(x0, labels);
            }
        }
        eager.Synchronize();
        graphed.WriteBack();
        double maxDiff = 0, maxWeight = 0;
        using (no_grad())
            foreach (var (a, b) in eager.Model.parameters().Zip(graphedTrainer.Model.parameters()))
            {
                maxDiff = Math.Max(maxDiff, (a - b).abs().max().item<float>());
                maxWeight = Math.Max(maxWeight, a.abs().max().item<float>());
            }
        return string.Format(CultureInfo.InvariantCulture, "graphed training step (not what ddpm train runs), {0} steps at batch {1} ({2}): " +
            "max |Δweight| {3:E2} (max |weight| {4:F3}), Adam steps {5} eager vs {6} graphed", steps, config.Train.BatchSize, graphed.Description,
            maxDiff, maxWeight, eager.Flat.Updates, graphedTrainer.Flat.Updates);
    }
}
