using Ddpm.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>
/// A <see cref="Trainer"/>'s optimizer step — Algorithm 1's loss, backward, Adam over the flat buffer and the EMA —
/// captured once as a CUDA graph and replayed per batch, so the host no longer issues ~2,500 kernels per step.
/// <para>
/// t and ε are drawn on the CPU from the trainer's generator exactly as
/// <see cref="Diffusion.GaussianDiffusion.TrainingLoss(Diffusion.DenoisingNetwork, Tensor, Generator?, double)"/> draws
/// them (the same run on any device) and copied with x_0 (and labels) into static buffers before each replay. The
/// optimizer is <see cref="TensorAdam"/> and the average <see cref="DeviceEma"/> (their step counts live on the
/// device); a step with a non-finite loss or gradient is masked out on the device as the trainer does. The warm-up runs
/// before the capture are masked out too (a device flag), so capturing changes no weight.
/// </para>
/// <para>
/// One batch shape is captured (the first one seen); other shapes (an epoch's last, smaller batch) run the same step
/// eagerly. Without graphs (the CPU, a CPU-only libtorch, <c>DDPM_CUDA_GRAPHS</c> not 1, a failed capture) every
/// step runs eagerly — the same arithmetic, which the CPU tests compare with the trainer's own step. Only
/// <c>ddpm bench</c> uses this class (<c>ddpm train</c> runs <see cref="Trainer"/>'s eager step); its replays are not
/// checked against eager steps here (bench's <c>--verify-graphs</c> compares weights after a run). Steps taken here do
/// not advance <see cref="Trainer.Step"/>; <see cref="WriteBack"/> hands Adam's step count back to the optimizer.
/// </para>
/// </summary>
public sealed class GraphedTrainingStep : IDisposable
{
    private readonly Trainer _trainer;
    private readonly FlatAdam _flat;
    private readonly TensorAdam _adam;
    private readonly DeviceEma? _ema;
    private readonly Tensor _enabled;
    private Inputs? _static;
    private CudaGraph? _graph;
    private string? _eagerBecause;

    /// <summary>The step's inputs: x_0, t, ε and labels (or null).</summary>
    private sealed record Inputs(Tensor X0, Tensor T, Tensor Noise, Tensor? Labels) : IDisposable
    {
        public bool Fits(Tensor x0, Tensor? labels) => X0.shape.SequenceEqual(x0.shape) && (Labels is null) == (labels is null);

        public void Dispose()
        {
            X0.Dispose();
            T.Dispose();
            Noise.Dispose();
            Labels?.Dispose();
        }
    }

    private GraphedTrainingStep(Trainer trainer, FlatAdam flat, string? eagerBecause)
    {
        _trainer = trainer;
        _flat = flat;
        _eagerBecause = eagerBecause;
        _adam = new TensorAdam(flat);
        if (trainer.Ema is not null) _ema = new DeviceEma(trainer.Ema, trainer.Step);
        _enabled = full(Array.Empty<long>(), true, dtype: @bool, device: trainer.Device).DetachFromDisposeScope();
    }

    /// <summary>The step of <paramref name="trainer"/>. <paramref name="useGraphs"/>: null = graphs where available,
    /// false = eager.</summary>
    public static GraphedTrainingStep For(Trainer trainer, bool? useGraphs = null)
    {
        string? reason = useGraphs == false ? "graphs turned off" : CudaGraphs.ReasonNotToUse(trainer.Device);
        return new GraphedTrainingStep(trainer, trainer.Flat, reason);
    }

    /// <summary>Receives the warning when the capture fails and steps run eagerly; default: stderr.</summary>
    public Action<string> Warn { get; set; } = message => Console.Error.WriteLine(message);

    /// <summary>Whether steps of the captured shape replay a CUDA graph.</summary>
    public bool UsesGraphs => _eagerBecause is null;

    /// <summary>"CUDA graphs" or "eager (why)", for reports.</summary>
    public string Description => UsesGraphs ? "CUDA graphs" : $"eager ({_eagerBecause})";

    /// <summary>Adam with its step count on the device.</summary>
    public TensorAdam Adam => _adam;

    /// <summary>
    /// One step on <paramref name="x0"/> (on the trainer's device; labels likewise, already dropped for guidance
    /// training). Returns the loss and whether the update applied (device scalars the caller owns); no host wait.
    /// </summary>
    public (Tensor Loss, Tensor Applied) Run(Tensor x0, Tensor? labels = null)
    {
        using var scope = NewDisposeScope();
        var generator = _trainer.Generator;
        // TrainingLoss's draws, in its order.
        var t = randint(0, _trainer.Diffusion.T, [x0.shape[0]], dtype: int64, generator: generator);
        var noise = randn(x0.shape, dtype: x0.dtype, generator: generator);
        _adam.SyncLearningRate();
        if (_static is null && UsesGraphs) Capture(x0, t, noise, labels);
        Tensor loss, applied;
        if (_graph is not null && _static!.Fits(x0, labels))
        {
            Fill(_static, x0, t, noise, labels);
            _graph.Replay();
            (loss, applied) = (_graph.Outputs[0].clone(), _graph.Outputs[1].clone());
        }
        else
        {
            var device = x0.device;
            var outputs = Body(new Inputs(x0, t.to(device, non_blocking: true), noise.to(device, non_blocking: true), labels));
            (loss, applied) = (outputs[0], outputs[1]);
        }
        return (loss.MoveToOuterDisposeScope(), applied.MoveToOuterDisposeScope());
    }

    /// <summary>Hands Adam's step count back to the flat optimizer (a host read), e.g. before saving a
    /// checkpoint.</summary>
    public void WriteBack() => _adam.WriteBack();

    private void Capture(Tensor x0, Tensor t, Tensor noise, Tensor? labels)
    {
        var device = x0.device;
        var inputs = new Inputs(x0.clone().DetachFromDisposeScope(), t.to(device).DetachFromDisposeScope(),
            noise.to(device).DetachFromDisposeScope(), labels?.clone().DetachFromDisposeScope());
        try
        {
            // Warm-ups run real forward and backward passes but change nothing: the device flag masks their updates.
            _enabled.fill_(false);
            _graph = CudaGraph.Capture(device, () => Body(inputs), warmups: 3);
            _static = inputs;
        }
        catch (Exception e)
        {
            // A step that failed half-way may have left gradients behind (in the graph's pool): drop them.
            _flat.ZeroGrad();
            inputs.Dispose();
            if (e is not CudaGraphException) throw; // a warm-up failed: the eager step would fail the same way
            _eagerBecause = "capture failed: " + e.Message;
            Warn($"warning: CUDA graph capture of the training step failed, training eagerly: {e.Message}");
        }
        finally
        {
            _enabled.fill_(true);
        }
    }

    private static void Fill(Inputs into, Tensor x0, Tensor t, Tensor noise, Tensor? labels)
    {
        into.X0.copy_(x0);
        into.T.copy_(t, nonBlocking: true);
        into.Noise.copy_(noise, nonBlocking: true);
        into.Labels?.copy_(labels!);
    }

    /// <summary>The step itself (Algorithm 1, backward, masked Adam and EMA): what the graph records.</summary>
    private Tensor[] Body(Inputs s)
    {
        var diffusion = _trainer.Diffusion;
        var network = _trainer.ComputeModel ?? _trainer.Model; // a bf16 copy casts in and out itself
        var xt = diffusion.QSample(s.X0, s.T, s.Noise);
        var loss = diffusion.Loss(network.forward(xt, s.T, s.Labels), diffusion.TargetFor(s.X0, s.T, s.Noise), s.T,
            _trainer.Config.Train.MinSnrGamma);
        loss.backward();
        var gradients = _flat.Gradients();
        var applied = gradients.isfinite().all().logical_and_(loss.isfinite()).logical_and_(_enabled);
        _adam.Step(gradients, applied);
        _ema?.Update(_flat.Weights, applied, _enabled);
        _flat.ZeroGrad();
        return [loss.detach(), applied];
    }

    public void Dispose()
    {
        _graph?.Dispose();
        _static?.Dispose();
        _adam.Dispose();
        _ema?.Dispose();
        _enabled.Dispose();
    }
}
