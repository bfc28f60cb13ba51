using Ddpm.Diffusion;
using Ddpm.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Models;

/// <summary>
/// The U-Net's forward pass for sampling, replayed from a CUDA graph on CUDA (PyTorch's <c>make_graphed_callables</c>
/// for inference): per input shape, static input buffers and one capture; each call copies x, t (and y) into the
/// buffers, replays, and returns a copy of the output. Same function as
/// <see cref="UNet.forward(Tensor, Tensor, Tensor?)"/>, without the host's cost of issuing ~1,000 kernels per call.
/// Eager unless <c>DDPM_CUDA_GRAPHS=1</c> and graphs are available (<see cref="CudaGraphs.ReasonNotToUse"/>), or after
/// a capture failed (once, with a warning).
/// <para>Checked, not trusted: a shape's first call runs eagerly and captures; its second call, the first replay (on
/// other inputs than the capture's, so a graph that ignores its inputs shows), is compared with the eager forward on
/// the same inputs. Beyond float tolerance (<see cref="Agrees"/>) the graph is dropped, the shape runs eagerly from
/// then on, and one warning line says so.</para>
/// Always runs under no_grad. Every sampler adopts it by calling <see cref="Forward"/> (or <see cref="Predictor"/>)
/// instead of the model.
/// </summary>
public sealed class GraphedForward : IDisposable
{
    /// <summary>At most this many shapes get a graph (each keeps its activations' memory); others run
    /// eagerly.</summary>
    public const int MaxGraphs = 8;

    private readonly UNet _model;
    private readonly Dictionary<string, Captured> _graphs = new();
    private readonly HashSet<string> _eagerShapes = new();
    private readonly Func<Func<Tensor[]>, CudaGraph> _capture;
    private readonly bool _cudaInputsOnly;
    private string? _eagerBecause;

    private sealed record Captured(CudaGraph Graph, Tensor X, Tensor T, Tensor? Y) : IDisposable
    {
        /// <summary>Whether this graph's first replay has been compared with the eager forward.</summary>
        public bool Verified { get; set; }

        public void Dispose()
        {
            Graph.Dispose();
            X.Dispose();
            T.Dispose();
            Y?.Dispose();
        }
    }

    private GraphedForward(UNet model, string? eagerBecause, Func<Func<Tensor[]>, CudaGraph> capture, bool cudaInputsOnly)
    {
        _model = model;
        _eagerBecause = eagerBecause;
        _capture = capture;
        _cudaInputsOnly = cudaInputsOnly;
    }

    /// <summary>
    /// Wraps <paramref name="model"/> (already on its device). <paramref name="useGraphs"/>: null = graphs where
    /// available, false = eager.
    /// </summary>
    public static GraphedForward Create(UNet model, bool? useGraphs = null)
    {
        var device = model.parameters().First().device;
        string? reason = useGraphs == false ? "graphs turned off" : CudaGraphs.ReasonNotToUse(device);
        return new GraphedForward(model, reason, body => CudaGraph.Capture(device, body, warmups: 2), cudaInputsOnly: true);
    }

    /// <summary>Graphs from <paramref name="capture"/>, inputs on any device (tests: a fake libtorch, CPU).</summary>
    internal static GraphedForward CreateWith(UNet model, Func<Func<Tensor[]>, CudaGraph> capture) =>
        new(model, null, capture, cudaInputsOnly: false);

    /// <summary>Receives the warning when a capture fails or a replay disagrees and the wrapper falls back to eager;
    /// default: stderr.</summary>
    public Action<string> Warn { get; set; } = message => Console.Error.WriteLine(message);

    /// <summary>Whether calls replay CUDA graphs.</summary>
    public bool UsesGraphs => _eagerBecause is null;

    /// <summary>"CUDA graphs" or "eager (why)", for reports.</summary>
    public string Description => UsesGraphs ? "CUDA graphs" : $"eager ({_eagerBecause})";

    /// <summary>Shapes with a graph so far (captured, and verified once replayed).</summary>
    public int GraphCount => _graphs.Count;

    /// <summary>Shapes that run eagerly because their first replay disagreed with the eager forward.</summary>
    public int RejectedShapes => _eagerShapes.Count;

    /// <summary>ε_θ(x_t, t, y) as <see cref="UNet.forward(Tensor, Tensor, Tensor?)"/>; a new tensor the caller
    /// owns.</summary>
    public Tensor Forward(Tensor x, Tensor t, Tensor? y = null)
    {
        using var noGrad = no_grad();
        if (!UsesGraphs || (_cudaInputsOnly && x.device_type != DeviceType.CUDA)) return _model.forward(x, t, y);
        var key = $"{string.Join('x', x.shape)}:{x.dtype}:{string.Join('x', t.shape)}:{(y is null ? "-" : string.Join('x', y.shape))}";
        if (!_graphs.TryGetValue(key, out var captured))
        {
            var eager = _model.forward(x, t, y);
            if (_graphs.Count < MaxGraphs && !_eagerShapes.Contains(key) && TryCapture(x, t, y) is { } fresh) _graphs[key] = fresh;
            return eager;
        }
        var replayed = Replay(captured, x, t, y);
        if (captured.Verified) return replayed;
        // The first replay of this shape, against the eager forward on the same inputs.
        var expected = _model.forward(x, t, y);
        if (Agrees(replayed, expected, out var difference))
        {
            captured.Verified = true;
            expected.Dispose();
            return replayed;
        }
        replayed.Dispose();
        _graphs.Remove(key);
        captured.Dispose();
        _eagerShapes.Add(key);
        Warn($"warning: the CUDA graph of the U-Net forward for x {string.Join('x', x.shape)} disagrees with the eager " +
            $"forward ({difference}); running that shape eagerly");
        return expected;
    }

    /// <summary>The forward as a <see cref="NoisePredictor"/> with labels <paramref name="y"/> (null: ∅).</summary>
    public NoisePredictor Predictor(Tensor? y = null) => (x, t) => Forward(x, t, y);

    private static Tensor Replay(Captured captured, Tensor x, Tensor t, Tensor? y)
    {
        captured.X.copy_(x);
        captured.T.copy_(t);
        captured.Y?.copy_(y!);
        captured.Graph.Replay();
        return captured.Graph.Outputs[0].clone();
    }

    /// <summary>
    /// Whether a replayed output equals the eager one within float tolerance, as torch.allclose: the same places
    /// non-finite, elsewhere |replayed − eager| ≤ atol + rtol·|eager| with rtol = 1e-3 and atol = 1e-3 · max(1,
    /// max |eager|) for float32 weights, ten times both for bfloat16 ones (kernels picked differently inside and
    /// outside a capture may round differently). <paramref name="difference"/> describes the largest difference.
    /// </summary>
    internal bool Agrees(Tensor replayed, Tensor eager, out string difference)
    {
        using var scope = NewDisposeScope();
        if (!replayed.shape.SequenceEqual(eager.shape))
        {
            difference = $"shape {string.Join('x', replayed.shape)} instead of {string.Join('x', eager.shape)}";
            return false;
        }
        var a = replayed.to(float64);
        var b = eager.to(float64);
        var finite = b.isfinite();
        bool sameNonFinite = finite.eq(a.isfinite()).all().item<bool>();
        var both = finite.logical_and(a.isfinite());
        var gap = where(both, (a - b).abs(), zeros_like(a));
        var size = where(both, b.abs(), zeros_like(b));
        double largest = gap.max().item<double>(), magnitude = size.max().item<double>();
        double scale = _model.parameters().First().dtype == ScalarType.BFloat16 ? 10 : 1;
        double rtol = 1e-3 * scale, atol = 1e-3 * scale * Math.Max(1, magnitude);
        bool close = gap.le(size.mul(rtol).add(atol)).all().item<bool>();
        difference = string.Create(System.Globalization.CultureInfo.InvariantCulture,
            $"max |Δ| = {largest:G3} at max |eager| = {magnitude:G3}{(sameNonFinite ? "" : ", non-finite in other places")}");
        return close && sameNonFinite;
    }

    private Captured? TryCapture(Tensor x, Tensor t, Tensor? y)
    {
        // Static inputs start as copies of the first call's, so the warm-up runs see real values.
        var sx = x.clone().DetachFromDisposeScope();
        var st = t.clone().DetachFromDisposeScope();
        var sy = y?.clone().DetachFromDisposeScope();
        try
        {
            var graph = _capture(() => [_model.forward(sx, st, sy)]);
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
