using System.Globalization;
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
/// <c>ddpm bench</c> uses this class (<c>ddpm train</c> runs <see cref="Trainer"/>'s eager step). Steps taken here do
/// not advance <see cref="Trainer.Step"/>; <see cref="WriteBack"/> hands Adam's step count back to the optimizer.
/// </para>
/// <para>Checked, not trusted: the first replay is compared with an eager step from the same state on the same
/// inputs (<see cref="StepsAgree"/>). If they differ beyond float tolerance the graph is dropped with one warning,
/// the eager step's result stands, and every later step runs eagerly.</para>
/// </summary>
public sealed class GraphedTrainingStep : IDisposable
{
    private readonly Trainer _trainer;
    private readonly FlatAdam _flat;
    private readonly TensorAdam _adam;
    private readonly DeviceEma? _ema;
    private readonly Tensor _enabled;
    private Inputs? _static;
    private readonly Func<Func<Tensor[]>, CudaGraph> _capture;
    private CudaGraph? _graph;
    private bool _verified;
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

    private GraphedTrainingStep(Trainer trainer, FlatAdam flat, string? eagerBecause, Func<Func<Tensor[]>, CudaGraph> capture)
    {
        _trainer = trainer;
        _flat = flat;
        _eagerBecause = eagerBecause;
        _capture = capture;
        _adam = new TensorAdam(flat);
        if (trainer.Ema is not null) _ema = new DeviceEma(trainer.Ema, trainer.Step);
        _enabled = full(Array.Empty<long>(), true, dtype: @bool, device: trainer.Device).DetachFromDisposeScope();
    }

    /// <summary>The step of <paramref name="trainer"/>. <paramref name="useGraphs"/>: null = graphs where available,
    /// false = eager.</summary>
    public static GraphedTrainingStep For(Trainer trainer, bool? useGraphs = null)
    {
        string? reason = useGraphs == false ? "graphs turned off" : CudaGraphs.ReasonNotToUse(trainer.Device);
        var device = trainer.Device;
        return new GraphedTrainingStep(trainer, trainer.Flat, reason, body => CudaGraph.Capture(device, body, warmups: 3));
    }

    /// <summary>Graphs from <paramref name="capture"/>, on any device (tests: a fake libtorch, the CPU).</summary>
    internal static GraphedTrainingStep CreateWith(Trainer trainer, Func<Func<Tensor[]>, CudaGraph> capture) =>
        new(trainer, trainer.Flat, null, capture);

    /// <summary>Receives the warning when the capture fails or the first replay disagrees and steps run eagerly;
    /// default: stderr.</summary>
    public Action<string> Warn { get; set; } = message => Console.Error.WriteLine(message);

    /// <summary>Whether steps of the captured shape replay a CUDA graph.</summary>
    public bool UsesGraphs => _eagerBecause is null;

    /// <summary>"CUDA graphs" or "eager (why)", for reports.</summary>
    public string Description => UsesGraphs ? "CUDA graphs" : $"eager ({_eagerBecause})";

    /// <summary>Adam with its step count on the device.</summary>
    public TensorAdam Adam => _adam;

    /// <summary>
    /// One step on <paramref name="x0"/> (on the trainer's device; labels likewise, already dropped for guidance
    /// training). Returns the loss and whether the update applied (device scalars the caller owns); no host wait,
    /// except in the step that checks the first replay.
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
            if (_verified) (loss, applied) = Replay(x0, t, noise, labels);
            else (loss, applied) = FirstReplay(x0, t, noise, labels);
        }
        else (loss, applied) = Eager(x0, t, noise, labels);
        return (loss.MoveToOuterDisposeScope(), applied.MoveToOuterDisposeScope());
    }

    private (Tensor Loss, Tensor Applied) Replay(Tensor x0, Tensor t, Tensor noise, Tensor? labels)
    {
        Fill(_static!, x0, t, noise, labels);
        _graph!.Replay();
        return (_graph.Outputs[0].clone(), _graph.Outputs[1].clone());
    }

    private (Tensor Loss, Tensor Applied) Eager(Tensor x0, Tensor t, Tensor noise, Tensor? labels)
    {
        var device = x0.device;
        var outputs = Body(new Inputs(x0, t.to(device, non_blocking: true), noise.to(device, non_blocking: true), labels));
        return (outputs[0], outputs[1]);
    }

    /// <summary>
    /// Replays from a saved state, then steps eagerly from the same state on the same inputs and compares the two;
    /// the eager step's state is kept either way, the graph only if they agree.
    /// </summary>
    private (Tensor Loss, Tensor Applied) FirstReplay(Tensor x0, Tensor t, Tensor noise, Tensor? labels)
    {
        var state = State();
        var before = state.Select(s => s.clone()).ToArray();
        var graphStep = Replay(x0, t, noise, labels);
        var afterGraph = state.Select(s => s.clone()).ToArray();
        for (int i = 0; i < state.Length; i++) state[i].copy_(before[i]);
        var eagerStep = Eager(x0, t, noise, labels);
        // The bf16 copy (last, where there is one) is the weights rounded: restored above, not compared.
        int compared = _flat.ComputeWeights is null ? state.Length : state.Length - 1;
        double tolerance = _flat.ComputeWeights is null ? 1e-2 : 5e-2;
        if (StepsAgree(graphStep, eagerStep, before[..compared], afterGraph[..compared], state[..compared], tolerance,
                out var difference))
        {
            _verified = true;
            return eagerStep;
        }
        _graph!.Dispose();
        _graph = null;
        _static!.Dispose();
        _static = null;
        _eagerBecause = "first replay disagreed with the eager step";
        Warn($"warning: the CUDA graph of the training step disagrees with the eager step ({difference}); training eagerly");
        return eagerStep;
    }

    /// <summary>What a step changes: weights, Adam's moments and step count, the average and its count, and the bf16
    /// copy (last).</summary>
    private Tensor[] State()
    {
        var state = new List<Tensor> { _flat.Weights, _flat.ExpAvg, _flat.ExpAvgSq, _adam.Count };
        if (_ema is not null) state.AddRange([_ema.Average.Flat, _ema.Count]);
        if (_flat.ComputeWeights is { } compute) state.Add(compute);
        return [.. state];
    }

    /// <summary>
    /// Whether two steps from the same state <paramref name="before"/> agree: the losses within
    /// <paramref name="tolerance"/> relative (or non-finite in both), the applied flags equal, and each state tensor's
    /// update within ‖Δ_graph − Δ_eager‖ ≤ tolerance·‖Δ_eager‖. Updates, not states: a replay that changed nothing,
    /// or stepped on other inputs, fails even though Adam moves each weight by only about the learning rate; a norm,
    /// not an elementwise bound, because Adam's first steps move a weight by ±lr whatever the size of its gradient,
    /// so differently rounded kernels may flip a few near-zero ones.
    /// </summary>
    internal static bool StepsAgree((Tensor Loss, Tensor Applied) graph, (Tensor Loss, Tensor Applied) eager,
        Tensor[] before, Tensor[] afterGraph, Tensor[] afterEager, double tolerance, out string difference)
    {
        using var scope = NewDisposeScope();
        double lossGraph = graph.Loss.to(float64).item<double>(), lossEager = eager.Loss.to(float64).item<double>();
        bool lossAgrees = double.IsFinite(lossEager)
            ? Math.Abs(lossGraph - lossEager) <= tolerance * Math.Abs(lossEager) + 1e-6
            : !double.IsFinite(lossGraph);
        if (!lossAgrees)
        {
            difference = string.Create(CultureInfo.InvariantCulture, $"loss {lossGraph:G4} instead of {lossEager:G4}");
            return false;
        }
        bool appliedGraph = graph.Applied.item<bool>(), appliedEager = eager.Applied.item<bool>();
        if (appliedGraph != appliedEager)
        {
            difference = $"update applied: {appliedGraph} instead of {appliedEager}";
            return false;
        }
        double worst = 0;
        for (int i = 0; i < before.Length; i++)
        {
            var start = before[i].to(float64);
            var expected = afterEager[i].to(float64) - start;
            double gap = (afterGraph[i].to(float64) - start - expected).norm().item<double>();
            double size = expected.norm().item<double>();
            if (gap > tolerance * size)
            {
                difference = string.Create(CultureInfo.InvariantCulture,
                    $"‖Δ_graph − Δ_eager‖ = {gap:G3} at ‖Δ_eager‖ = {size:G3} in state tensor {i}");
                return false;
            }
            if (size > 0) worst = Math.Max(worst, gap / size);
        }
        difference = string.Create(CultureInfo.InvariantCulture, $"largest relative update difference {worst:G3}");
        return true;
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
            _graph = _capture(() => Body(inputs));
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
