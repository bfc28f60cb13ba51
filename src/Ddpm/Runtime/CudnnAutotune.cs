using System.Runtime.InteropServices;

namespace Ddpm.Runtime;

/// <summary>
/// cuDNN's autotuner (PyTorch's <c>torch.backends.cudnn.benchmark</c>): the first convolution of each shape times the
/// available algorithms and keeps the fastest. TorchSharp 0.107 does not expose the switch, so this calls libtorch's
/// <c>at::globalContext().setBenchmarkCuDNN(bool)</c> directly (a C++ member function: on x86-64 the context pointer is
/// the first argument). Works with any libtorch build; it only matters on CUDA.
/// </summary>
public static class CudnnAutotune
{
    private const string Library = "libtorch_cpu";

    [DllImport(Library, EntryPoint = "_ZN2at13globalContextEv")]
    private static extern IntPtr GlobalContext();

    [DllImport(Library, EntryPoint = "_ZN2at7Context17setBenchmarkCuDNNEb")]
    private static extern void SetBenchmarkCuDNN(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [DllImport(Library, EntryPoint = "_ZNK2at7Context14benchmarkCuDNNEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool BenchmarkCuDNN(IntPtr context);

    /// <summary>Whether the autotuner is on; setting it throws <see cref="PlatformNotSupportedException"/> when libtorch lacks the entry points.</summary>
    public static bool Enabled
    {
        get => Call(() => BenchmarkCuDNN(GlobalContext()));
        set => Call(() => { SetBenchmarkCuDNN(GlobalContext(), value); return true; });
    }

    private static T Call<T>(Func<T> f)
    {
        // TorchSharp loads libtorch first; make sure it has, so the name resolves to the same library.
        TorchSharp.torch.InitializeDeviceType(TorchSharp.DeviceType.CPU);
        try { return f(); }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            throw new PlatformNotSupportedException("this libtorch does not expose at::Context::setBenchmarkCuDNN: " + e.Message, e);
        }
    }
}
