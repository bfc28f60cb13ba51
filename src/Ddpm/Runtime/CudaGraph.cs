using System.Runtime;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Runtime;

/// <summary>How strictly CUDA checks other work while a graph is being captured (CUDA's
/// cudaStreamCaptureMode).</summary>
public enum CaptureMode
{
    /// <summary>Any thread's unsafe CUDA call fails the capture (PyTorch's default).</summary>
    Global = 0,
    /// <summary>Only the capturing thread's unsafe calls fail it.</summary>
    ThreadLocal = 1,
    /// <summary>Nothing is checked.</summary>
    Relaxed = 2,
}

/// <summary>
/// One captured CUDA graph (PyTorch's <c>torch.cuda.CUDAGraph</c> used like <c>torch.cuda.graph</c>): the device work
/// of a function, recorded once and replayed with one launch, so the host's cost of issuing kernels disappears.
/// <para>
/// <see cref="Capture"/> runs the function a few times on a side stream first (cuDNN's autotuner, cuBLAS workspaces and
/// the autograd engine's threads are set up outside the capture), then records it; its outputs become
/// <see cref="Outputs"/>, tensors in the graph's private memory pool that every <see cref="Replay"/> rewrites. Inputs
/// must be tensors the function read at capture time, refilled in place (<c>copy_</c>) before each replay. The
/// function must not synchronise with the host (no <c>item()</c>, no copies from pageable host memory).
/// </para>
/// </summary>
public sealed class CudaGraph : IDisposable
{
    private IntPtr _graph;
    private readonly Tensor[] _outputs;

    /// <summary>The function's outputs from the capture; each replay overwrites them.</summary>
    public IReadOnlyList<Tensor> Outputs => _outputs;

    /// <summary>The device the graph runs on.</summary>
    public Device Device { get; }

    private CudaGraph(IntPtr graph, Tensor[] outputs, Device device)
    {
        _graph = graph;
        _outputs = outputs;
        Device = device;
    }

    /// <summary>
    /// Runs <paramref name="body"/> <paramref name="warmups"/> times on a side stream, then captures one run of it.
    /// </summary>
    /// <exception cref="CudaGraphException">graphs are unavailable, or libtorch refused the capture (the message says
    /// why); nothing is left captured, and the current stream is restored.</exception>
    public static CudaGraph Capture(Device device, Func<Tensor[]> body, int warmups = 3, CaptureMode mode = CaptureMode.Global)
    {
        if (device.type != DeviceType.CUDA) throw new ArgumentException($"CUDA graphs need a CUDA device, got {device.type}", nameof(device));
        CudaGraphs.ThrowIfUnavailable();
        return CaptureWith(device, body, warmups, mode, () => cuda.synchronize(device));
    }

    /// <summary><see cref="Capture(Device, Func{Tensor[]}, int, CaptureMode)"/> after the device checks;
    /// <paramref name="synchronizeDevice"/> waits for the device (tests drive this against a fake libtorch on the
    /// CPU).</summary>
    internal static CudaGraph CaptureWith(Device device, Func<Tensor[]> body, int warmups, CaptureMode mode, Action synchronizeDevice)
    {
        if (warmups < 1) throw new ArgumentOutOfRangeException(nameof(warmups), "at least one warm-up run (libtorch sets itself up in it)");
        int index = Math.Max(device.index, 0);
        // Work already queued on the current stream (e.g. writes to the inputs) completes before the side stream reads.
        synchronizeDevice();
        CudaGraphNative.Check(CudaGraphNative.ddpm_cg_current_stream(index, out var previous));
        CudaGraphNative.Check(CudaGraphNative.ddpm_cg_pool_stream(index, 0, out var side));
        CudaGraphNative.Check(CudaGraphNative.ddpm_cg_set_stream(side, index));
        IntPtr graph = IntPtr.Zero;
        Tensor[]? outputs = null;
        try
        {
            for (int i = 0; i < warmups; i++) DisposeAll(Run(body));
            CudaGraphNative.Check(CudaGraphNative.ddpm_cg_sync_stream(side, index));
            // No finalizer may free a CUDA tensor from another thread while the capture runs, and no collection
            // should start one: collect now, then ask for a region without collections (best effort).
            GC.Collect();
            GC.WaitForPendingFinalizers();
            bool noGc = TryStartNoGcRegion();
            try
            {
                CudaGraphNative.Check(CudaGraphNative.ddpm_cg_create(0, out graph));
                CudaGraphNative.Check(CudaGraphNative.ddpm_cg_capture_begin(graph, 0, 0, (int)mode));
                try
                {
                    outputs = Run(body);
                }
                catch (Exception e)
                {
                    // End the capture so the stream is usable again; its own error only adds to the first one.
                    var end = CudaGraphNative.Message(CudaGraphNative.ddpm_cg_capture_end(graph));
                    throw new CudaGraphException($"capturing failed: {FirstLine(e.Message)}" + (end is null ? "" : $"; then {FirstLine(end)}"), e);
                }
                CudaGraphNative.Check(CudaGraphNative.ddpm_cg_capture_end(graph));
            }
            finally
            {
                if (noGc && GCSettings.LatencyMode == GCLatencyMode.NoGCRegion) GC.EndNoGCRegion();
            }
            return new CudaGraph(graph, outputs, device);
        }
        catch
        {
            if (outputs is not null) DisposeAll(outputs);
            CudaGraphNative.ddpm_cg_destroy(graph); // its error, if any, is secondary to the one being thrown
            throw;
        }
        finally
        {
            // Failing to restore the stream would leave every later kernel on the side stream: report it loudly.
            var restore = CudaGraphNative.Message(CudaGraphNative.ddpm_cg_set_stream(previous, index));
            if (restore is not null) Console.Error.WriteLine($"error: could not restore libtorch's CUDA stream after a graph capture: {restore}");
        }
    }

    /// <summary>Launches the captured work on the current stream (asynchronously, like any kernel).</summary>
    public void Replay()
    {
        ObjectDisposedException.ThrowIf(_graph == IntPtr.Zero, this);
        CudaGraphNative.Check(CudaGraphNative.ddpm_cg_replay(_graph));
    }

    /// <summary>Frees the graph, its memory pool and <see cref="Outputs"/>.</summary>
    public void Dispose()
    {
        if (_graph == IntPtr.Zero) return;
        DisposeAll(_outputs);
        var error = CudaGraphNative.Message(CudaGraphNative.ddpm_cg_destroy(_graph));
        _graph = IntPtr.Zero;
        if (error is not null) throw new CudaGraphException(error);
    }

    /// <summary>What the managed side of a capture may allocate without a collection (TorchSharp's tensor
    /// wrappers).</summary>
    private const long NoGcBytes = 64L << 20;

    private static bool TryStartNoGcRegion()
    {
        try { return GC.TryStartNoGCRegion(NoGcBytes); }
        catch (Exception e) when (e is ArgumentOutOfRangeException or InvalidOperationException) { return false; } // too large here, or already in one
    }

    private static Tensor[] Run(Func<Tensor[]> body)
    {
        using var scope = NewDisposeScope();
        var outputs = body();
        foreach (var o in outputs) o.DetachFromDisposeScope();
        return outputs;
    }

    private static void DisposeAll(Tensor[] tensors)
    {
        foreach (var t in tensors) t.Dispose();
    }

    private static string FirstLine(string message) => message.Split('\n', 2)[0].Trim();
}
