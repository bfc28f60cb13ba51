using System.Diagnostics;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Diffusion;
using Ddpm.Distributed;
using Ddpm.Models;
using Ddpm.Runtime;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>
/// Algorithm 1 with Adam, as the seed trains: per step a shuffled batch x_0, t ~ U{0..T−1}, ε ~ N(0, I), loss = MSE(ε,
/// ε_θ(x_t, t)). Given data, never opens folders. Randomness is reproducible: data order and flips come from
/// <see cref="BatchSampler"/> streams seeded by (seed, epoch), timesteps, noise and label dropout from one training
/// generator whose state is checkpointed.
/// <para>
/// Built for a GPU that the host must keep fed: Adam runs over one flat buffer (<see cref="FlatAdam"/>), a step with a
/// non-finite loss or gradient is masked out on the device, and the host reads losses and those flags only every
/// <see cref="SyncEvery"/> steps, so nothing in a step waits for the GPU. How it runs is fixed at construction
/// (<see cref="TrainerOptions"/>); what it trains is the config.
/// </para>
/// </summary>
public sealed class Trainer : IDisposable
{
    private static readonly object SeededInit = new();
    private readonly FlatAdam _adam;
    /// <summary>The bf16 copy that runs forward and backward (<c>precision: bf16</c>), or null.</summary>
    private readonly UNet? _compute;
    private readonly Action<string>? _warn;
    /// <summary>Data parallelism over several processes (<see cref="TrainerOptions.Parallel"/>), or null.</summary>
    private readonly DataParallel? _parallel;
    private readonly List<PendingStep> _pending = [];

    /// <summary>Where a step sits in the run and who hears of it, kept with the step until its loss is read.</summary>
    private readonly record struct StepContext(int Epoch, long StepInEpoch, long StepsInEpoch, long Images, Stopwatch? Clock,
        Action<StepReport>? Report);

    private sealed record PendingStep(long Step, StepContext Context, Tensor Loss, Tensor Applied);

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
    /// <summary>Steps between host reads of the losses and non-finite flags (<see cref="TrainerOptions.SyncEvery"/>,
    /// resolved for the device).</summary>
    public int SyncEvery { get; }
    /// <summary>Whether updates are made conditional on the device (<see cref="TrainerOptions.MaskOnDevice"/>, resolved
    /// for the device).</summary>
    public bool MaskOnDevice { get; }
    /// <summary>The flat optimizer and the bf16 compute copy, for <see cref="GraphedTrainingStep"/>.</summary>
    internal FlatAdam Flat => _adam;
    internal UNet? ComputeModel => _compute;
    /// <summary>
    /// The learning rate per step (<c>lr_schedule</c>, <c>lr_warmup_steps</c>); its length is the run's step count,
    /// known once <see cref="TrainEpoch"/> has seen the data. Null until then: <see cref="TrainBatch"/> keeps the
    /// optimizer's lr.
    /// </summary>
    public LearningRateSchedule? LearningRates { get; private set; }
    /// <summary>The optimizer's current learning rate (that of the last step taken).</summary>
    public double LearningRate => _adam.Options.LearningRate!.Value;

    /// <summary>A trainer for <paramref name="model"/> (moved to <paramref name="device"/>; the trainer owns and
    /// disposes it).</summary>
    public Trainer(UNet model, DdpmConfig config, Device device, TrainerOptions? options = null)
    {
        TorchSharpPatch.EnsureApplied();
        options ??= new TrainerOptions();
        SyncEvery = options.SyncEveryOn(device);
        if (SyncEvery < 1) throw new ArgumentOutOfRangeException(nameof(options), $"SyncEvery must be at least 1, got {SyncEvery}");
        MaskOnDevice = options.MaskOnDeviceOn(device);
        _warn = options.Warn;
        _parallel = options.Parallel;
        Model = model;
        Config = config;
        Device = device;
        Diffusion = GaussianDiffusion.FromOptions(config.Diffusion);
        Model.to(device);
        if (config.Train.Precision == Precision.Bf16)
        {
            // Same architecture; FlatAdam overwrites its initial weights with the master's.
            _compute = new UNet(config.Model);
            _compute.to(device);
            _compute.to(ScalarType.BFloat16);
        }
        _adam = new FlatAdam(Model.parameters(), config.Train.Lr, _compute?.parameters());
        Generator = new Generator((ulong)config.Train.Seed, new Device("cpu"));
        if (config.Train.EmaDecay > 0) Ema = new ExponentialMovingAverage(Model, config.Train.EmaDecay);
    }

    /// <summary>A fresh model from the config, initialised from the seed.</summary>
    public static Trainer Create(DdpmConfig config, Device device, TrainerOptions? options = null)
    {
        TorchSharpPatch.EnsureApplied();
        MemoryEstimate.EnsureFits(config, device);
        UNet model;
        // Weight init draws from TorchSharp's process-wide generator: seed and build as one step.
        lock (SeededInit)
        {
            manual_seed(config.Train.Seed);
            model = new UNet(config.Model);
        }
        return new Trainer(model, config, device, options);
    }

    /// <summary>
    /// Continues from a checkpoint saved by <see cref="Save"/> (or by the per-tensor Adam of earlier versions: the
    /// optimizer format is the same): weights, Adam state, RNG, EMA, epoch and step. <paramref name="adjust"/> may
    /// change the stored config (e.g. a longer step budget). The checkpoint is opened, and its config parsed, once.
    /// </summary>
    public static Trainer Resume(string checkpointPath, Device device, Func<DdpmConfig, DdpmConfig>? adjust = null, TrainerOptions? options = null)
    {
        TorchSharpPatch.EnsureApplied();
        using var checkpoint = CheckpointReader.Open(checkpointPath);
        var config = adjust is null ? checkpoint.Config : adjust(checkpoint.Config).Validate();
        MemoryEstimate.EnsureFits(config, device);
        if (!checkpoint.HasTrainingState)
            throw new CheckpointException(checkpointPath, "holds weights only (no optimizer/RNG state), so training cannot resume from it");
        // Data parallel: the global batch, and so every step, depends on the number of processes.
        int processes = options?.Parallel?.Size ?? 1;
        if (checkpoint.Manifest.WorldSize != processes)
            throw new CheckpointException(checkpointPath, $"was written by a run over {checkpoint.Manifest.WorldSize} process(es) and this run has {processes}; " +
                $"resume it with the same number (mpirun -n {checkpoint.Manifest.WorldSize}{(checkpoint.Manifest.WorldSize == 1 ? ", or without mpirun" : "")})");
        var model = checkpoint.LoadModel();
        Trainer trainer;
        try { trainer = new Trainer(model, config, device, options); }
        catch
        {
            model.Dispose();
            throw;
        }
        try
        {
            checkpoint.LoadTrainingState(new Checkpoint.TrainingState(trainer._adam.Optimizer, trainer.Generator));
            trainer._adam.SyncUpdatesFromState();
            if (trainer.Ema is not null && checkpoint.HasEma) checkpoint.LoadEmaInto(trainer.Ema.Shadow);
        }
        catch
        {
            trainer.Dispose();
            throw;
        }
        trainer.Epoch = checkpoint.Manifest.Epoch;
        trainer.Step = checkpoint.Manifest.Step;
        trainer.StepInEpoch = checkpoint.Manifest.StepInEpoch;
        return trainer;
    }

    /// <summary>
    /// Whether the last <see cref="TrainEpoch"/> ended early on a stop request: its cancellation token, or data
    /// parallel, any rank's (so every rank sees the same value, and a loop that ends on it ends on all ranks together).
    /// </summary>
    public bool Stopped { get; private set; }

    /// <summary>Whether the step budget (<c>max_steps</c>) or the epoch count is reached.</summary>
    public bool Finished =>
        Epoch >= Config.Train.NumEpochs || (Config.Train.MaxSteps > 0 && Step >= Config.Train.MaxSteps);

    /// <summary>
    /// Trains one epoch (or up to the step budget). Returns null when there was nothing left to do.
    /// <paramref name="onStep"/> sees every step, in order, each time the host reads a window of losses.
    /// </summary>
    public EpochReport? TrainEpoch(ImageDataset data, Action<StepReport>? onStep = null, CancellationToken cancel = default)
    {
        if (Finished) return null;
        TorchSharpPatch.EnsureApplied();
        Synchronize();
        // Data parallel: the epoch's order is split into global batches of N·B; each rank trains on its B of every one.
        _parallel?.CheckWeights(_adam.Weights, Step);
        var sampler = new BatchSampler(data.Count, Config.Train.BatchSize * (_parallel?.Size ?? 1), Config.Train.Seed);
        long stepsInEpoch = sampler.BatchesPerEpoch;
        long runSteps = stepsInEpoch * Config.Train.NumEpochs;
        LearningRates ??= LearningRateSchedule.FromOptions(Config.Train,
            Config.Train.MaxSteps > 0 ? Math.Min(Config.Train.MaxSteps, runSteps) : runSteps);
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
        _compute?.train();
        long rssStart = Environment.WorkingSet;
        var clock = Stopwatch.StartNew();
        double lossSum = 0;
        long steps = 0, images = 0, finiteSteps = 0;
        void Report(StepReport s)
        {
            if (float.IsFinite(s.Loss)) { lossSum += s.Loss; finiteSteps++; }
            onStep?.Invoke(s);
        }
        foreach (var (batch, indices) in sampler.Batches(epochNumber, (int)StepInEpoch))
        {
            Stopped = cancel.IsCancellationRequested;
            if (_parallel is not null) Stopped = _parallel.AnyStop(Stopped); // all ranks leave before the same step
            if (Stopped || (Config.Train.MaxSteps > 0 && Step >= Config.Train.MaxSteps)) break;
            using var scope = NewDisposeScope();
            var part = _parallel?.ShardOf(indices.shape[0]) ?? Shard.Whole(indices.shape[0]);
            var mine = part.Of(indices);
            Tensor? flip = null;
            if (Config.Dataset.RandomFlip)
            {
                using var flips = sampler.FlipGenerator(epochNumber, batch);
                flip = part.Of(ImageDataset.DrawFlips(flips, part.Total));
            }
            var x0 = data.BatchWithFlips(mine, Device, flip);
            var labels = Model.IsConditional ? DropLabels(data.BatchLabels(mine)!, part).to(Device, non_blocking: true) : null;
            images += part.Total;
            TrainStep(x0, labels, part, new StepContext(epochNumber, batch + 1, stepsInEpoch, images, clock, Report));
            StepInEpoch = batch + 1;
            steps++;
        }
        Synchronize();
        _parallel?.CheckWeights(_adam.Weights, Step);
        bool complete = StepInEpoch >= stepsInEpoch;
        if (complete)
        {
            Epoch = epochNumber;
            StepInEpoch = 0;
        }
        return new EpochReport(epochNumber, Step, steps, finiteSteps > 0 ? lossSum / finiteSteps : double.NaN, clock.Elapsed.TotalSeconds,
            images / clock.Elapsed.TotalSeconds, rssStart, Environment.WorkingSet, complete);
    }

    /// <summary>
    /// One optimizer step on <paramref name="x0"/> (already on <see cref="Device"/>): Algorithm 1's loss, backward,
    /// Adam and the EMA, with no host synchronisation when updates are masked on the device. The loss is read at the
    /// next <see cref="Synchronize"/> (which runs by itself every <see cref="SyncEvery"/> steps) and passed to
    /// <paramref name="onStep"/> there. Data parallel, <paramref name="x0"/> is this rank's <paramref name="part"/> of
    /// the global batch (required then; a single process trains on the whole of <paramref name="x0"/>).
    /// </summary>
    public void TrainBatch(Tensor x0, Tensor? labels = null, Action<StepReport>? onStep = null, Shard? part = null)
    {
        if (_parallel is not null && part is null) throw new ArgumentException("a data-parallel trainer needs this rank's part of the global batch", nameof(part));
        TorchSharpPatch.EnsureApplied();
        TrainStep(x0, labels, part ?? Shard.Whole(x0.shape[0]), new StepContext(0, 0, 0, 0, null, onStep));
    }

    private void TrainStep(Tensor x0, Tensor? labels, Shard part, StepContext context)
    {
        if (x0.shape[0] != part.Count) throw new ArgumentException($"x0 has {x0.shape[0]} images for a part of {part.Count}", nameof(x0));
        if (LearningRates is { } schedule)
            _adam.Options.LearningRate = schedule.At(Step);
        using (var scope = NewDisposeScope())
        {
            try
            {
                var network = _compute ?? Model; // a bf16 copy takes and returns float32
                // t and ε are drawn for the whole global batch on every rank (same generator state everywhere) and each
                // keeps its rows: together the ranks draw exactly what one process training on the global batch draws.
                var (tAll, noiseAll) = Diffusion.DrawTrainingNoise(part.Total, x0.shape[1..], x0.dtype, Generator);
                Tensor loss;
                if (part.Count > 0)
                {
                    loss = Diffusion.TrainingLoss((xt, t) => network.forward(xt, t, labels), x0,
                        part.Of(tAll).to(Device, non_blocking: true), part.Of(noiseAll).to(Device, non_blocking: true), Config.Train.MinSnrGamma);
                    loss.backward();
                }
                else
                {
                    loss = zeros([], float32, Device); // an empty part (a last batch smaller than the ranks) adds nothing
                }
                var gradients = _adam.Gradients();
                if (_parallel is not null) loss = _parallel.Average(gradients, loss, part);
                var applied = gradients.isfinite().all().logical_and_(loss.isfinite());
                if (MaskOnDevice)
                {
                    // Decided on the device: no waiting, at the price of a few extra passes over the weights.
                    _adam.Step(gradients, applied);
                    Ema?.Update(_adam.Weights, Step, applied);
                }
                else if (applied.item<bool>())
                {
                    // On the CPU reading the flag costs nothing, and the in-place update saves those passes.
                    _adam.Step(gradients);
                    Ema?.Update(_adam.Weights, Step);
                }
                _adam.ZeroGrad();
                _pending.Add(new PendingStep(Step + 1, context, loss.detach().DetachFromDisposeScope(), applied.DetachFromDisposeScope()));
            }
            catch (Exception e) when (e is not TrainingException && IsOutOfMemory(e))
            {
                throw new TrainingException($"out of memory at step {Step + 1} on {Device.type} with batch_size {x0.shape[0]}; " +
                    $"try a smaller train_params.batch_size (e.g. --batch-size {Math.Max(1, x0.shape[0] / 2)}) ({FirstLine(e.Message)})");
            }
        }
        Step++;
        NativeGarbage.CollectIfDue();
        if (_pending.Count >= SyncEvery) Synchronize();
        if (_parallel is not null && Step % _parallel.CheckEvery == 0) _parallel.CheckWeights(_adam.Weights, Step);
    }

    /// <summary>
    /// Reads the losses and non-finite flags of the steps since the last read (one wait for the device), applies
    /// <c>on_nonfinite</c> to them in order, and passes each step's report to the callback it was trained with.
    /// </summary>
    public void Synchronize()
    {
        if (_pending.Count == 0) return;
        var window = _pending.ToArray();
        _pending.Clear();
        float[] values;
        using (var scope = NewDisposeScope())
        {
            var packed = stack(window.Select(p => p.Loss.to(float32)).Concat(window.Select(p => p.Applied.to(float32))).ToArray());
            values = packed.cpu().data<float>().ToArray();
        }
        foreach (var p in window)
        {
            p.Loss.Dispose();
            p.Applied.Dispose();
        }
        int n = window.Length;
        // Masked updates counted themselves as applied; take back those the flags skipped (host-decided ones never
        // counted).
        int skippedMasked = MaskOnDevice ? values.Skip(n).Count(v => v == 0) : 0;
        if (skippedMasked > 0) _adam.Unapply(skippedMasked);
        for (int i = 0; i < n; i++)
        {
            var (step, context) = (window[i].Step, window[i].Context);
            float loss = values[i];
            if (values[n + i] == 0)
            {
                string problem = float.IsFinite(loss) ? "a gradient became non-finite" : $"loss became {loss}";
                string where = context.Epoch > 0 ? $"step {step} (epoch {context.Epoch})" : $"step {step}";
                if (Config.Train.OnNonFinite == NonFiniteAction.Stop)
                    throw new TrainingException($"{problem} at {where}; its update was not applied, " +
                        "training stopped. Try a lower learning rate, or train_params.on_nonfinite: skip.");
                SkippedSteps++;
                _warn?.Invoke($"warning: {problem} at {where}; step skipped (on_nonfinite: skip)");
            }
            double rate = context.Clock is null ? double.NaN : context.Images / context.Clock.Elapsed.TotalSeconds;
            context.Report?.Invoke(new StepReport(context.Epoch, step, context.StepInEpoch, context.StepsInEpoch, loss, rate));
        }
    }

    /// <summary>Whether <paramref name="e"/> is an allocation failure of libtorch (CUDA or CPU) or of .NET.</summary>
    public static bool IsOutOfMemory(Exception e) =>
        e is OutOfMemoryException || e.Message.Contains("out of memory", StringComparison.OrdinalIgnoreCase)
        || e.Message.Contains("DefaultCPUAllocator: can't allocate memory", StringComparison.Ordinal);

    private static string FirstLine(string message) => message.Split('\n', 2)[0].Trim();

    /// <summary>Classifier-free guidance training: each label becomes ∅ with probability
    /// <c>label_dropout</c>.</summary>
    private Tensor DropLabels(Tensor labels, Shard part)
    {
        if (Config.Train.LabelDropout <= 0) return labels;
        var drop = part.Of(rand(part.Total, generator: Generator)) < Config.Train.LabelDropout;
        return where(drop, full_like(labels, Model.NullLabel), labels);
    }

    /// <summary>Saves weights, optimizer and RNG state, epoch and step (atomically), after reading any pending
    /// steps.</summary>
    public void Save(string path)
    {
        Synchronize();
        Checkpoint.Save(path, Model, Config, Epoch, Step, StepInEpoch, new Checkpoint.TrainingState(_adam.Optimizer, Generator), Ema?.Shadow,
            worldSize: _parallel?.Size ?? 1);
    }

    public void Dispose()
    {
        foreach (var p in _pending)
        {
            p.Loss.Dispose();
            p.Applied.Dispose();
        }
        _pending.Clear();
        _adam.Dispose();
        _compute?.Dispose();
        Ema?.Dispose();
        Generator.Dispose();
        Model.Dispose();
    }
}
