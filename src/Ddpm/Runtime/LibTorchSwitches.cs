using System.Runtime.InteropServices;

namespace Ddpm.Runtime;

/// <summary>
/// Two of libtorch's global switches that TorchSharp 0.107 does not expose, set through <c>at::globalContext()</c>
/// directly (C++ member functions: on x86-64 the context pointer is the first argument). Works with any libtorch build.
/// </summary>
public static class LibTorchSwitches
{
    private const string Library = "libtorch_cpu";

    [DllImport(Library, EntryPoint = "_ZN2at13globalContextEv")]
    private static extern IntPtr GlobalContext();

    [DllImport(Library, EntryPoint = "_ZN2at7Context17setBenchmarkCuDNNEb")]
    private static extern void SetBenchmarkCuDNN(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [DllImport(Library, EntryPoint = "_ZNK2at7Context14benchmarkCuDNNEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool BenchmarkCuDNN(IntPtr context);

    [DllImport(Library, EntryPoint = "_ZN2at7Context20setUserEnabledMkldnnEb")]
    private static extern void SetUserEnabledMkldnn(IntPtr context, [MarshalAs(UnmanagedType.U1)] bool enabled);

    [DllImport(Library, EntryPoint = "_ZNK2at7Context17userEnabledMkldnnEv")]
    [return: MarshalAs(UnmanagedType.U1)]
    private static extern bool UserEnabledMkldnn(IntPtr context);

    /// <summary>
    /// cuDNN's autotuner (PyTorch's <c>torch.backends.cudnn.benchmark</c>): the first convolution of each shape times
    /// the available algorithms and keeps the fastest. Only matters on CUDA.
    /// </summary>
    public static bool CudnnBenchmark
    {
        get => Call(nameof(CudnnBenchmark), () => BenchmarkCuDNN(GlobalContext()));
        set => Call(nameof(CudnnBenchmark), () => { SetBenchmarkCuDNN(GlobalContext(), value); return true; });
    }

    /// <summary>
    /// Whether libtorch may run CPU convolutions through oneDNN (PyTorch's <c>torch.backends.mkldnn.enabled</c>);
    /// when off, PyTorch's own CPU kernels run them. See <see cref="DevicePolicy"/> for why it is off by default.
    /// </summary>
    public static bool OneDnn
    {
        get => Call(nameof(OneDnn), () => UserEnabledMkldnn(GlobalContext()));
        set => Call(nameof(OneDnn), () => { SetUserEnabledMkldnn(GlobalContext(), value); return true; });
    }

    private static T Call<T>(string name, Func<T> f)
    {
        // TorchSharp loads libtorch first; make sure it has, so the name resolves to the same library.
        TorchSharp.torch.InitializeDeviceType(TorchSharp.DeviceType.CPU);
        try { return f(); }
        catch (Exception e) when (e is EntryPointNotFoundException or DllNotFoundException)
        {
            throw new PlatformNotSupportedException($"this libtorch does not expose the switch behind {name}: {e.Message}", e);
        }
    }
}
