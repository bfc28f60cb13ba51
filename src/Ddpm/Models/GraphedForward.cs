using Ddpm.Diffusion;
using Ddpm.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Models;

/// <summary>
/// The U-Net's forward pass for sampling, replayed from a CUDA graph on CUDA (PyTorch's <c>make_graphed_callables</c>
/// for inference): per input shape, static input buffers and one capture; each call copies x, t (and y) into the
/// buffers, replays, and returns a copy of the output. Same function as <see cref="UNet.forward(Tensor, Tensor, Tensor?)"/>,
/// without the host's cost of issuing ~1,000 kernels per call. Eager wherever graphs are unavailable
/// (<see cref="CudaGraphs.ReasonNotToUse"/>: the CPU, a CPU-only libtorch, <c>DDPM_CUDA_GRAPHS=0</c>), or after a
/// capture failed (once, with a warning). Always runs under no_grad. Every sampler adopts it by calling
/// <see cref="Forward"/> (or <see cref="Predictor"/>) instead of the model.
/// </summary>
public sealed class GraphedForward : IDisposable
{
    /// <summary>At most this many shapes get a graph (each keeps its activations' memory); others run eagerly.</summary>
    public const int MaxGraphs = 8;

    private readonly UNet _model;
    private readonly Dictionary<string, Captured> _graphs = new();
    private string? _eagerBecause;

    private sealed record Captured(CudaGraph Graph, Tensor X, Tensor T, Tensor? Y) : IDisposable
    {
        public void Dispose()
        {
            Graph.Dispose();
            X.Dispose();
            T.Dispose();
            Y?.Dispose();
        }
    }

    private GraphedForward(UNet model, string? eagerBecause)
    {
        _model = model;
        _eagerBecause = eagerBecause;
    }

    /// <summary>
    /// Wraps <paramref name="model"/> (already on its device). <paramref name="useGraphs"/>: null = graphs where
    /// available, false = eager.
    /// </summary>
    public static GraphedForward Create(UNet model, bool? useGraphs = null)
    {
        var device = model.parameters().First().device;
        string? reason = useGraphs == false ? "graphs turned off" : CudaGraphs.ReasonNotToUse(device);
        return new GraphedForward(model, reason);
    }

    /// <summary>Receives the warning when a capture fails and the wrapper falls back to eager; default: stderr.</summary>
    public Action<string> Warn { get; set; } = message => Console.Error.WriteLine(message);

    /// <summary>Whether calls replay CUDA graphs.</summary>
    public bool UsesGraphs => _eagerBecause is null;

    /// <summary>"CUDA graphs" or "eager (why)", for reports.</summary>
    public string Description => UsesGraphs ? "CUDA graphs" : $"eager ({_eagerBecause})";

    /// <summary>Shapes captured so far.</summary>
    public int GraphCount => _graphs.Count;

    /// <summary>ε_θ(x_t, t, y) as <see cref="UNet.forward(Tensor, Tensor, Tensor?)"/>; a new tensor the caller owns.</summary>
    public Tensor Forward(Tensor x, Tensor t, Tensor? y = null)
    {
        using var noGrad = no_grad();
        if (!UsesGraphs || x.device_type != DeviceType.CUDA) return _model.forward(x, t, y);
        var key = $"{string.Join('x', x.shape)}:{x.dtype}:{string.Join('x', t.shape)}:{(y is null ? "-" : string.Join('x', y.shape))}";
        if (!_graphs.TryGetValue(key, out var captured))
        {
            if (_graphs.Count >= MaxGraphs) return _model.forward(x, t, y);
            captured = TryCapture(x, t, y);
            if (captured is null) return _model.forward(x, t, y);
            _graphs[key] = captured;
        }
        captured.X.copy_(x);
        captured.T.copy_(t);
        captured.Y?.copy_(y!);
        captured.Graph.Replay();
        return captured.Graph.Outputs[0].clone();
    }

    /// <summary>The forward as a <see cref="NoisePredictor"/> with fixed labels <paramref name="y"/> (null: none / ∅).</summary>
    public NoisePredictor Predictor(Tensor? y = null) => (x, t) => Forward(x, t, y);

    private Captured? TryCapture(Tensor x, Tensor t, Tensor? y)
    {
        // Static inputs start as copies of the first call's, so the warm-up runs see real values.
        var sx = x.clone().DetachFromDisposeScope();
        var st = t.clone().DetachFromDisposeScope();
        var sy = y?.clone().DetachFromDisposeScope();
        try
        {
            var graph = CudaGraph.Capture(x.device, () => [_model.forward(sx, st, sy)], warmups: 2);
            return new Captured(graph, sx, st, sy);
        }
        catch (Exception e)
        {
            sx.Dispose();
            st.Dispose();
            sy?.Dispose();
            if (e is not CudaGraphException) throw; // a warm-up failed: the eager forward would fail the same way
            _eagerBecause = "capture failed: " + e.Message;
            Warn($"warning: CUDA graph capture of the U-Net forward failed, running eagerly: {e.Message}");
            return null;
        }
    }

    public void Dispose()
    {
        foreach (var g in _graphs.Values) g.Dispose();
        _graphs.Clear();
    }
}
