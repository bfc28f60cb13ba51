using System.Runtime.InteropServices;

namespace Ddpm.Runtime;

/// <summary>
/// The entry points of <c>libddpm_cuda_graph.so</c> (<c>native/ddpm_cuda_graph.cpp</c>): an <c>extern "C"</c> shim over
/// libtorch's <c>at::cuda::CUDAGraph</c> and CUDA stream functions that catches every C++ exception. Each returns
/// null on success, else a message (valid until the next call on the same thread); <see cref="Check"/> turns it into a
/// <see cref="CudaGraphException"/>.
/// </summary>
internal static class CudaGraphNative
{
    public const string Library = "libddpm_cuda_graph";

    /// <summary>The shim version this code calls (native/ddpm_cuda_graph.cpp: kAbiVersion).</summary>
    public const int AbiVersion = 1;

    [DllImport(Library)] public static extern int ddpm_cg_abi_version();
    [DllImport(Library)] public static extern IntPtr ddpm_cg_bind([MarshalAs(UnmanagedType.LPUTF8Str)] string libraries);
    [DllImport(Library)] public static extern IntPtr ddpm_cg_bound_libraries();
    [DllImport(Library)] public static extern IntPtr ddpm_cg_create(int keepGraph, out IntPtr graph);
    [DllImport(Library)] public static extern IntPtr ddpm_cg_destroy(IntPtr graph);
    [DllImport(Library)] public static extern IntPtr ddpm_cg_capture_begin(IntPtr graph, ulong poolFirst, ulong poolSecond, int mode);
    [DllImport(Library)] public static extern IntPtr ddpm_cg_capture_end(IntPtr graph);
    [DllImport(Library)] public static extern IntPtr ddpm_cg_replay(IntPtr graph);
    [DllImport(Library)] public static extern IntPtr ddpm_cg_pool_stream(int device, int highPriority, out IntPtr stream);
    [DllImport(Library)] public static extern IntPtr ddpm_cg_current_stream(int device, out IntPtr stream);
    [DllImport(Library)] public static extern IntPtr ddpm_cg_set_stream(IntPtr stream, int device);
    [DllImport(Library)] public static extern IntPtr ddpm_cg_sync_stream(IntPtr stream, int device);

    /// <summary>The shim's message, or null for success.</summary>
    public static string? Message(IntPtr error) => error == IntPtr.Zero ? null : Marshal.PtrToStringUTF8(error) ?? "an error without a message";

    /// <summary>Throws <see cref="CudaGraphException"/> with the shim's message unless <paramref name="error"/> is
    /// null.</summary>
    public static void Check(IntPtr error)
    {
        if (Message(error) is { } text) throw new CudaGraphException(text);
    }
}
