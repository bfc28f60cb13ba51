using System.Diagnostics;
using TorchSharp;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Diffusion;
using Ddpm.Models;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>
/// Algorithm 1 with Adam, as the seed trains: per step a shuffled batch x_0, t ~ U{0..T−1}, ε ~ N(0, I),
/// loss = MSE(ε, ε_θ(x_t, t)). Given batches, never opens folders. Randomness is reproducible: data order comes from
/// a generator seeded by (seed, epoch), timesteps and noise from one training generator whose state is checkpointed.
/// </summary>
public sealed class Trainer : IDisposable
{
    private readonly Adam _optimizer;

    public UNet Model { get; }
    public DdpmConfig Config { get; }
    public GaussianDiffusion Diffusion { get; }
    public Device Device { get; }
    /// <summary>Draws t and ε; lives on the CPU so runs are reproducible across devices.</summary>
    public Generator Generator { get; }
    /// <summary>Completed epochs.</summary>
    public int Epoch { get; private set; }
    /// <summary>Completed optimizer steps.</summary>
    public long Step { get; private set; }
    /// <summary>Steps already done inside epoch <see cref="Epoch"/> + 1 (after a mid-epoch resume).</summary>
    public long StepInEpoch { get; private set; }

    public Trainer(UNet model, DdpmConfig config, Device device)
    {
        Model = model;
        Config = config;
        Device = device;
        Diffusion = new GaussianDiffusion(NoiseSchedule.FromOptions(config.Diffusion));
        Model.to(device);
        _optimizer = optim.Adam(Model.parameters(), config.Train.Lr);
        Generator = new Generator((ulong)config.Train.Seed, new Device("cpu"));
    }

    /// <summary>A fresh model from the config, initialised from the seed.</summary>
    public static Trainer Create(DdpmConfig config, Device device)
    {
        manual_seed(config.Train.Seed);
        return new Trainer(new UNet(config.Model), config, device);
    }

    /// <summary>Continues from a checkpoint saved by <see cref="Save"/>: weights, Adam state, RNG, epoch and step.</summary>
    public static Trainer Resume(string checkpointPath, Device device, Func<DdpmConfig, DdpmConfig>? adjust = null)
    {
        var (model, config, manifest) = Checkpoint.LoadModel(checkpointPath);
        if (adjust is not null) config = adjust(config).Validate();
        var trainer = new Trainer(model, config, device);
        Checkpoint.LoadTrainingState(checkpointPath, new Checkpoint.TrainingState(trainer._optimizer, trainer.Generator));
        trainer.Epoch = manifest.Epoch;
        trainer.Step = manifest.Step;
        trainer.StepInEpoch = manifest.StepInEpoch;
        return trainer;
    }

    /// <summary>Whether the step budget (<c>max_steps</c>) or the epoch count is reached.</summary>
    public bool Finished =>
        Epoch >= Config.Train.NumEpochs || (Config.Train.MaxSteps > 0 && Step >= Config.Train.MaxSteps);

    /// <summary>Trains one epoch (or up to the step budget). Returns null when there was nothing left to do.</summary>
    public EpochReport? TrainEpoch(ImageDataset data, Action<StepReport>? onStep = null, CancellationToken cancel = default)
    {
        if (Finished) return null;
        int batchSize = Config.Train.BatchSize;
        long n = data.Count;
        long stepsInEpoch = (n + batchSize - 1) / batchSize;
        int epochNumber = Epoch + 1;
        using var order = EpochOrder(n, epochNumber);

        Model.train();
        long rssStart = Environment.WorkingSet;
        var clock = Stopwatch.StartNew();
        double lossSum = 0;
        long steps = 0, images = 0;
        for (long s = StepInEpoch; s < stepsInEpoch; s++)
        {
            if (cancel.IsCancellationRequested || (Config.Train.MaxSteps > 0 && Step >= Config.Train.MaxSteps)) break;
            using var scope = NewDisposeScope();
            var indices = order.narrow(0, s * batchSize, Math.Min(batchSize, n - s * batchSize));
            var x0 = data.Batch(indices, Device);
            _optimizer.zero_grad();
            var loss = Diffusion.TrainingLoss((xt, t) => Model.forward(xt, t), x0, Generator);
            float value = loss.item<float>();
            if (!float.IsFinite(value))
                throw new TrainingException($"loss became {value} at step {Step + 1} (epoch {epochNumber}); " +
                    "training stopped and the last checkpoint was kept. Try a lower learning rate.");
            loss.backward();
            _optimizer.step();
            Step++;
            StepInEpoch = s + 1;
            steps++;
            images += indices.shape[0];
            lossSum += value;
            onStep?.Invoke(new StepReport(epochNumber, Step, s + 1, stepsInEpoch, value, images / clock.Elapsed.TotalSeconds));
        }
        bool complete = StepInEpoch >= stepsInEpoch;
        if (complete)
        {
            Epoch = epochNumber;
            StepInEpoch = 0;
        }
        return new EpochReport(epochNumber, Step, steps, steps > 0 ? lossSum / steps : double.NaN, clock.Elapsed.TotalSeconds,
            images / clock.Elapsed.TotalSeconds, rssStart, Environment.WorkingSet, complete);
    }

    /// <summary>The data order of an epoch: a permutation from a generator seeded by (seed, epoch).</summary>
    private Tensor EpochOrder(long n, int epoch)
    {
        var seed = unchecked((ulong)Config.Train.Seed * 1_000_003UL + (ulong)epoch);
        using var g = new Generator(seed, new Device("cpu"));
        return randperm(n, dtype: int64, generator: g);
    }

    /// <summary>Saves weights, optimizer and RNG state, epoch and step (atomically).</summary>
    public void Save(string path) =>
        Checkpoint.Save(path, Model, Config, Epoch, Step, StepInEpoch, new Checkpoint.TrainingState(_optimizer, Generator));

    public void Dispose()
    {
        _optimizer.Dispose();
        Generator.Dispose();
        Model.Dispose();
    }
}
