using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Runtime;

/// <summary>
/// Whether CUDA graphs (<see cref="CudaGraph"/>) can be captured in this process — the shim
/// <c>libddpm_cuda_graph.so</c> is present and finds libtorch's graph and stream functions in a loaded CUDA libtorch —
/// and whether they are wanted for a device: CUDA (cuda:0) and <c>DDPM_CUDA_GRAPHS=1</c>. Graphs are opt-in until a
/// GPU run has compared them with the eager code and timed them (no GPU has yet). Everything that captures graphs asks
/// <see cref="ReasonNotToUse"/> and runs eagerly, saying why, when it returns a reason.
/// </summary>
public static class CudaGraphs
{
    /// <summary>The variable that turns CUDA graphs on (1) on CUDA where available; unset or 0: off.</summary>
    public const string Variable = "DDPM_CUDA_GRAPHS";

    /// <summary>Where the shim looks for libtorch's functions (the first must be loaded: a CPU-only libtorch has
    /// none).</summary>
    public const string Libraries = "libtorch_cuda.so:libc10_cuda.so:libtorch_cpu.so:libtorch.so";

    private static readonly object Gate = new();
    private static string? _boundTo;

    /// <summary>Null when graphs can be captured in this process, else why not.</summary>
    public static string? UnavailableReason
    {
        get
        {
            lock (Gate) return _boundTo == Libraries ? null : BindLocked(Libraries);
        }
    }

    /// <summary>Whether graphs can be captured in this process.</summary>
    public static bool IsAvailable => UnavailableReason is null;

    /// <summary>
    /// Null when work on <paramref name="device"/> should be captured into graphs, else why not ("device is cpu",
    /// "DDPM_CUDA_GRAPHS=0", "opt-in …" when the variable is unset, or <see cref="UnavailableReason"/>).
    /// </summary>
    /// <exception cref="ArgumentException"><c>DDPM_CUDA_GRAPHS</c> holds something other than 0 or 1.</exception>
    public static string? ReasonNotToUse(Device device)
    {
        if (device.type != DeviceType.CUDA) return $"device is {device.type.ToString().ToLowerInvariant()}";
        switch (DevicePolicy.Flag(Variable))
        {
            case false: return $"{Variable}=0";
            case null: return $"opt-in with {Variable}=1: not yet verified on a GPU";
        }
        if (device.index > 0) return "graphs are captured on cuda:0 only (libtorch's current device)";
        return UnavailableReason;
    }

    /// <summary>Throws <see cref="CudaGraphException"/> with the reason when graphs are unavailable.</summary>
    internal static void ThrowIfUnavailable()
    {
        if (UnavailableReason is { } reason) throw new CudaGraphException(reason);
    }

    /// <summary>Binds the shim to <paramref name="libraries"/> (':'-separated; tests bind it to a fake
    /// libtorch).</summary>
    internal static string? Bind(string libraries)
    {
        lock (Gate) return BindLocked(libraries);
    }

    private static string? BindLocked(string libraries)
    {
        _boundTo = null;
        InitializeDeviceType(DeviceType.CPU); // TorchSharp loads libtorch (and, from a PyTorch install, its CUDA parts)
        try
        {
            int version = CudaGraphNative.ddpm_cg_abi_version();
            if (version != CudaGraphNative.AbiVersion)
                return $"libddpm_cuda_graph.so has interface version {version}, this Ddpm.dll needs {CudaGraphNative.AbiVersion}";
            var error = CudaGraphNative.Message(CudaGraphNative.ddpm_cg_bind(libraries));
            if (error is null) _boundTo = libraries;
            return error;
        }
        catch (DllNotFoundException)
        {
            return "libddpm_cuda_graph.so was not found beside Ddpm.dll (the build compiles it with g++; was there no compiler?)";
        }
        catch (EntryPointNotFoundException e)
        {
            return "libddpm_cuda_graph.so does not match this Ddpm.dll: " + e.Message;
        }
    }
}
