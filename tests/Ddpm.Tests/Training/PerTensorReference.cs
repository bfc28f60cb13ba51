using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Diffusion;
using Ddpm.Models;
using Ddpm.Training;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Tests.Training;

/// <summary>
/// Algorithm 1 written plainly, with TorchSharp's own per-tensor <see cref="Adam"/> (zero_grad, backward, step) and a
/// per-tensor EMA θ_ema ← d·θ_ema + (1 − d)·θ, drawing data, t and ε exactly as <see cref="Trainer"/> does
/// (unconditional, no flips, CPU). It is the oracle the trainer's flat optimizer is compared with, and it writes
/// checkpoints the way the trainer did before it had a flat optimizer (TorchSharp's Adam state), so old checkpoints
/// stay tested.
/// </summary>
internal sealed class PerTensorReference : IDisposable
{
    private readonly DdpmConfig _config;
    private readonly GaussianDiffusion _diffusion;
    private readonly Adam _adam;

    public UNet Model { get; }
    public UNet? Ema { get; }
    public Generator Generator { get; }
    public int Epoch { get; private set; }
    public long Step { get; private set; }
    public long StepInEpoch { get; private set; }

    /// <summary>The same initial weights as <see cref="Trainer.Create"/> (seeded from
    /// <c>train_params.seed</c>).</summary>
    public PerTensorReference(DdpmConfig config)
    {
        _config = config;
        manual_seed(config.Train.Seed);
        Model = new UNet(config.Model);
        _diffusion = GaussianDiffusion.FromOptions(config.Diffusion);
        _adam = optim.Adam(Model.parameters(), config.Train.Lr);
        Generator = new Generator((ulong)config.Train.Seed, new Device("cpu"));
        if (config.Train.EmaDecay > 0)
        {
            Ema = new UNet(config.Model);
            using var noGrad = no_grad();
            foreach (var (e, p) in Ema.parameters().Zip(Model.parameters())) e.copy_(p);
        }
    }

    /// <summary>Continues from a checkpoint (weights, Adam state, RNG, EMA, counters), as <see cref="Trainer.Resume"/>
    /// does.</summary>
    public PerTensorReference(DdpmConfig config, string checkpoint) : this(config)
    {
        using var reader = CheckpointReader.Open(checkpoint);
        using (var stored = reader.LoadModel())
        using (no_grad())
            foreach (var (p, s) in Model.parameters().Zip(stored.parameters())) p.copy_(s);
        reader.LoadTrainingState(new Checkpoint.TrainingState(_adam, Generator));
        if (Ema is not null) reader.LoadEmaInto(Ema);
        (Epoch, Step, StepInEpoch) = (reader.Manifest.Epoch, reader.Manifest.Step, reader.Manifest.StepInEpoch);
    }

    /// <summary>Trains until <paramref name="steps"/> optimizer steps in total; returns each step's loss.</summary>
    public List<float> TrainTo(ImageDataset data, long steps)
    {
        var losses = new List<float>();
        Model.train();
        while (Step < steps)
        {
            var sampler = new BatchSampler(data.Count, _config.Train.BatchSize, _config.Train.Seed);
            int epoch = Epoch + 1;
            foreach (var (batch, indices) in sampler.Batches(epoch, (int)StepInEpoch))
            {
                if (Step >= steps) break;
                using var scope = NewDisposeScope();
                var x0 = data.Batch(indices, CPU, null);
                _adam.zero_grad();
                var loss = _diffusion.TrainingLoss((xt, t) => Model.forward(xt, t), x0, Generator);
                loss.backward();
                _adam.step();
                if (Ema is not null)
                {
                    double d = Math.Min(_config.Train.EmaDecay, (1.0 + Step) / (10.0 + Step));
                    using var noGrad = no_grad();
                    foreach (var (e, p) in Ema.parameters().Zip(Model.parameters())) e.mul_(d).add_(p.detach(), alpha: 1 - d);
                }
                losses.Add(loss.item<float>());
                Step++;
                StepInEpoch = batch + 1;
            }
            if (StepInEpoch >= sampler.BatchesPerEpoch) (Epoch, StepInEpoch) = (epoch, 0);
        }
        return losses;
    }

    /// <summary>A checkpoint with TorchSharp's per-tensor Adam state, as the trainer wrote them before its flat
    /// optimizer.</summary>
    public void Save(string path) =>
        Checkpoint.Save(path, Model, _config, Epoch, Step, StepInEpoch, new Checkpoint.TrainingState(_adam, Generator), Ema);

    public void Dispose()
    {
        _adam.Dispose();
        Generator.Dispose();
        Ema?.Dispose();
        Model.Dispose();
    }
}
