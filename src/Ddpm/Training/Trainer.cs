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
/// loss = MSE(ε, ε_θ(x_t, t)). Given data, never opens folders. Randomness is reproducible: data order and flips come
/// from <see cref="BatchSampler"/> streams seeded by (seed, epoch), timesteps, noise and label dropout from one training
/// generator whose state is checkpointed.
/// </summary>
public sealed class Trainer : IDisposable
{
    private static readonly object SeededInit = new();
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
    /// <summary>The moving average of the weights, when <c>ema_decay</c> &gt; 0.</summary>
    public ExponentialMovingAverage? Ema { get; }
    /// <summary>Steps skipped for a non-finite loss or gradient (<c>on_nonfinite: skip</c>) in this process.</summary>
    public long SkippedSteps { get; private set; }
    /// <summary>Receives warnings (e.g. a skipped step); null = silent.</summary>
    public Action<string>? Warn { get; set; }

    public Trainer(UNet model, DdpmConfig config, Device device)
    {
        Model = model;
        Config = config;
        Device = device;
        Diffusion = GaussianDiffusion.FromOptions(config.Diffusion);
        Model.to(device);
        _optimizer = optim.Adam(Model.parameters(), config.Train.Lr);
        Generator = new Generator((ulong)config.Train.Seed, new Device("cpu"));
        if (config.Train.EmaDecay > 0) Ema = new ExponentialMovingAverage(Model, config.Train.EmaDecay);
    }

    /// <summary>A fresh model from the config, initialised from the seed.</summary>
    public static Trainer Create(DdpmConfig config, Device device)
    {
        MemoryEstimate.EnsureFits(config, device);
        UNet model;
        // Weight init draws from TorchSharp's process-wide generator: seed and build as one step.
        lock (SeededInit)
        {
            manual_seed(config.Train.Seed);
            model = new UNet(config.Model);
        }
        return new Trainer(model, config, device);
    }

    /// <summary>Continues from a checkpoint saved by <see cref="Save"/>: weights, Adam state, RNG, epoch and step.</summary>
    public static Trainer Resume(string checkpointPath, Device device, Func<DdpmConfig, DdpmConfig>? adjust = null)
    {
        if (adjust is not null) MemoryEstimate.EnsureFits(adjust(StoredConfig(checkpointPath)).Validate(), device);
        else MemoryEstimate.EnsureFits(StoredConfig(checkpointPath), device);
        var (model, config, manifest) = Checkpoint.LoadModel(checkpointPath);
        if (adjust is not null) config = adjust(config).Validate();
        var trainer = new Trainer(model, config, device);
        Checkpoint.LoadTrainingState(checkpointPath, new Checkpoint.TrainingState(trainer._optimizer, trainer.Generator));
        if (trainer.Ema is not null && Checkpoint.HasEma(checkpointPath)) Checkpoint.LoadEmaInto(checkpointPath, trainer.Ema.Shadow);
        trainer.Epoch = manifest.Epoch;
        trainer.Step = manifest.Step;
        trainer.StepInEpoch = manifest.StepInEpoch;
        return trainer;
    }

    private static DdpmConfig StoredConfig(string checkpointPath)
    {
        var manifest = Checkpoint.ReadManifest(checkpointPath);
        try { return DdpmConfig.Parse(manifest.ConfigYaml); }
        catch (ConfigException e) { throw new CheckpointException(checkpointPath, "its stored config is invalid: " + e.Message, e); }
    }

    /// <summary>Whether the step budget (<c>max_steps</c>) or the epoch count is reached.</summary>
    public bool Finished =>
        Epoch >= Config.Train.NumEpochs || (Config.Train.MaxSteps > 0 && Step >= Config.Train.MaxSteps);

    /// <summary>Trains one epoch (or up to the step budget). Returns null when there was nothing left to do.</summary>
    public EpochReport? TrainEpoch(ImageDataset data, Action<StepReport>? onStep = null, CancellationToken cancel = default)
    {
        if (Finished) return null;
        var sampler = new BatchSampler(data.Count, Config.Train.BatchSize, Config.Train.Seed);
        long stepsInEpoch = sampler.BatchesPerEpoch;
        int epochNumber = Epoch + 1;
        if (Model.IsConditional)
        {
            if (data.Labels is null)
                throw new TrainingException($"model_params.num_classes = {Config.Model.NumClasses} needs labels, but {data.Description} has none");
            // Checked once per epoch, not per step (each check is a host sync).
            if (data.Labels.max().item<long>() >= Config.Model.NumClasses || data.Labels.min().item<long>() < 0)
                throw new TrainingException($"labels of {data.Description} must lie in 0..{Config.Model.NumClasses - 1} for model_params.num_classes = {Config.Model.NumClasses}");
        }

        Model.train();
        long rssStart = Environment.WorkingSet;
        var clock = Stopwatch.StartNew();
        double lossSum = 0;
        long steps = 0, images = 0, finiteSteps = 0;
        foreach (var (batch, indices) in sampler.Batches(epochNumber, (int)StepInEpoch))
        {
            if (cancel.IsCancellationRequested || (Config.Train.MaxSteps > 0 && Step >= Config.Train.MaxSteps)) break;
            using var scope = NewDisposeScope();
            using var flips = Config.Dataset.RandomFlip ? sampler.FlipGenerator(epochNumber, batch) : null;
            float value;
            try
            {
                var x0 = data.Batch(indices, Device, flips);
                _optimizer.zero_grad();
                var labels = Model.IsConditional ? DropLabels(data.BatchLabels(indices)!).to(Device) : null;
                var loss = Diffusion.TrainingLoss((xt, t) => Model.forward(xt, t, labels), x0, Generator);
                value = loss.item<float>();
                string? problem = float.IsFinite(value) ? null : $"loss became {value}";
                if (problem is null)
                {
                    loss.backward();
                    if (!GradientsFinite()) problem = "a gradient became non-finite";
                }
                if (problem is not null)
                {
                    if (Config.Train.OnNonFinite == NonFiniteAction.Stop)
                        throw new TrainingException($"{problem} at step {Step + 1} (epoch {epochNumber}); " +
                            "training stopped and the last checkpoint was kept. Try a lower learning rate, or train_params.on_nonfinite: skip.");
                    _optimizer.zero_grad();
                    SkippedSteps++;
                    Warn?.Invoke($"warning: {problem} at step {Step + 1} (epoch {epochNumber}); step skipped (on_nonfinite: skip)");
                }
                else
                {
                    _optimizer.step();
                    Ema?.Update(Model, Step);
                }
            }
            catch (Exception e) when (e is not TrainingException && IsOutOfMemory(e))
            {
                throw new TrainingException($"out of memory at step {Step + 1} on {Device.type} with batch_size {Config.Train.BatchSize}; " +
                    $"try a smaller train_params.batch_size (e.g. --batch-size {Math.Max(1, Config.Train.BatchSize / 2)}). The last checkpoint was kept. ({FirstLine(e.Message)})");
            }
            Step++;
            StepInEpoch = batch + 1;
            steps++;
            images += indices.shape[0];
            if (float.IsFinite(value)) { lossSum += value; finiteSteps++; }
            onStep?.Invoke(new StepReport(epochNumber, Step, batch + 1, stepsInEpoch, value, images / clock.Elapsed.TotalSeconds));
        }
        bool complete = StepInEpoch >= stepsInEpoch;
        if (complete)
        {
            Epoch = epochNumber;
            StepInEpoch = 0;
        }
        return new EpochReport(epochNumber, Step, steps, finiteSteps > 0 ? lossSum / finiteSteps : double.NaN, clock.Elapsed.TotalSeconds,
            images / clock.Elapsed.TotalSeconds, rssStart, Environment.WorkingSet, complete);
    }

    private bool GradientsFinite()
    {
        using var scope = NewDisposeScope();
        var checks = Model.parameters().Select(p => p.grad).Where(g => g is not null).Select(g => g!.isfinite().all()).ToArray();
        return checks.Length == 0 || stack(checks).all().item<bool>();
    }

    /// <summary>Whether <paramref name="e"/> is an allocation failure of libtorch (CUDA or CPU) or of .NET.</summary>
    public static bool IsOutOfMemory(Exception e) =>
        e is OutOfMemoryException || e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase)
        || e.Message.Contains("DefaultCPUAllocator: can't allocate memory", StringComparison.Ordinal);

    private static string FirstLine(string message) => message.Split('\n', 2)[0].Trim();

    /// <summary>Classifier-free guidance training: each label becomes ∅ with probability <c>label_dropout</c>.</summary>
    private Tensor DropLabels(Tensor labels)
    {
        if (Config.Train.LabelDropout <= 0) return labels;
        var drop = rand(labels.shape[0], generator: Generator) < Config.Train.LabelDropout;
        return where(drop, full_like(labels, Model.NullLabel), labels);
    }

    /// <summary>Saves weights, optimizer and RNG state, epoch and step (atomically).</summary>
    public void Save(string path) =>
        Checkpoint.Save(path, Model, Config, Epoch, Step, StepInEpoch, new Checkpoint.TrainingState(_optimizer, Generator), Ema?.Shadow);

    public void Dispose()
    {
        _optimizer.Dispose();
        Ema?.Dispose();
        Generator.Dispose();
        Model.Dispose();
    }
}
