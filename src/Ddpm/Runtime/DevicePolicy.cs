using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Runtime;

/// <summary>
/// How libtorch is set up for a device, in one place so the CLI and library users get the same numbers.
/// <para>CUDA: fp32 matmuls and convolutions on TF32 tensor cores (PyTorch's <c>allow_tf32</c>), and cuDNN's autotuner
/// unless <c>DDPM_CUDNN_BENCHMARK=0</c> (H200, seed config: sampling 15.6 → 13.1 ms per step).</para>
/// <para>CPU: oneDNN 3.7.1 (inside libtorch 2.10) computes wrong convolutions on virtual machines whose CPUID hides the
/// cache hierarchy (leaf 4 / 0x8000001D all zero; seen on this project's AMD EPYC Zen 5 VMs): with its AVX2 and AVX-512
/// kernels the input gradient of a 16→1 or 16→24 3×3 convolution is wrong on every call (NaN on some), a 48-channel
/// transposed convolution's output is wrong, bf16 stride-2 convolutions are off by ≈ 35 %. Its AVX kernels are exact
/// there. So, before oneDNN's first use, such a machine gets <c>DNNL_MAX_CPU_ISA=AVX</c> (unless the variable is set),
/// and a self-check compares oneDNN with libtorch's own kernels on those shapes; if they disagree, oneDNN is turned off
/// for the process (exact, but ≈ 3.5× slower forward passes). <c>DDPM_ONEDNN=0</c> turns it off, <c>1</c> keeps it
/// on without the check.</para>
/// <para>Host memory (Linux, glibc): libtorch takes every CPU tensor from malloc, and glibc serves blocks above its mmap
/// threshold (128 KiB, raised dynamically to at most 32 MiB) with fresh mmaps and returns the heap's top to the kernel
/// past 128 KiB, so each sampling step's megabytes of activations are page-faulted and zeroed by the kernel anew. The
/// policy raises both thresholds to 1 GiB with <c>mallopt</c> (freed blocks are reused instead). On the 2-core
/// development VM, <c>ddpm sample</c> of 100 guided quick-preset images in 20 steps, alternating runs: 243 / 252 vs
/// 799 / 672 ms per step with <c>DDPM_MALLOC=0</c>, system time 0.9 / 1.1 vs 10.6 / 7.9 s, page faults 0.10 / 0.11
/// vs 1.41 / 1.04 million, the same images bit for bit; <c>ddpm bench</c> training at batch 16: 122.5 / 147.2 vs
/// 112.2 / 128.2 img/s. <c>DDPM_MALLOC=0</c> leaves malloc alone, as does any <c>MALLOC_MMAP_THRESHOLD_</c> /
/// <c>MALLOC_TRIM_THRESHOLD_</c> the user set.</para>
/// </summary>
public static class DevicePolicy
{
    /// <summary>The variable that turns cuDNN's autotuner on (1, default) or off (0) for CUDA runs.</summary>
    public const string CudnnBenchmarkVariable = "DDPM_CUDNN_BENCHMARK";

    /// <summary>The variable that forces oneDNN off (0) or on without the self-check (1) for CPU convolutions.</summary>
    public const string OneDnnVariable = "DDPM_ONEDNN";

    /// <summary>oneDNN's own variable capping the instruction set its kernels use.</summary>
    public const string OneDnnIsaVariable = "DNNL_MAX_CPU_ISA";

    /// <summary>The variable that leaves glibc's malloc thresholds alone (0) or raises them (1, default).</summary>
    public const string MallocVariable = "DDPM_MALLOC";

    /// <summary>The mmap and trim thresholds the policy gives glibc's malloc.</summary>
    public const long MallocThresholdBytes = 1L << 30;

    /// <summary>glibc's own variables for the two thresholds: when the user set either, the policy leaves malloc alone.</summary>
    public static readonly IReadOnlyList<string> GlibcThresholdVariables = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"];

    private static readonly object Gate = new();
    private static string? _cpuConvolutions;
    private static string? _hostAllocator;

    /// <summary>Sets libtorch up for <paramref name="device"/> (idempotent; the CPU part runs for every device).</summary>
    /// <exception cref="ArgumentException">a DDPM_* variable holds something other than 0 or 1.</exception>
    public static void Apply(Device device)
    {
        EnsureCpuDefaults();
        if (device.type != DeviceType.CUDA) return;
        backends.cuda.matmul.allow_tf32 = true;
        backends.cudnn.allow_tf32 = true;
        if (CudnnBenchmarkRequested) LibTorchSwitches.CudnnBenchmark = true;
    }

    /// <summary>
    /// The CPU part of <see cref="Apply"/>, once per process. The U-Net's and the classifier's constructors call it, so
    /// it runs before their first convolution (oneDNN reads its ISA cap at its first use).
    /// </summary>
    public static void EnsureCpuDefaults()
    {
        if (_cpuConvolutions is not null) return;
        lock (Gate)
        {
            if (_cpuConvolutions is not null) return;
            _hostAllocator = ConfigureHostAllocator();
            _cpuConvolutions = ChooseCpuConvolutions();
        }
    }

    /// <summary>How host memory is allocated in this process (for reports), e.g. "glibc malloc, mmap/trim thresholds 1 GiB".</summary>
    public static string HostAllocator
    {
        get
        {
            EnsureCpuDefaults();
            return _hostAllocator!;
        }
    }

    private static string ConfigureHostAllocator()
    {
        if (!OperatingSystem.IsLinux()) return "the platform's malloc";
        if (Flag(MallocVariable) == false) return $"glibc malloc, its own thresholds ({MallocVariable}=0)";
        foreach (var own in GlibcThresholdVariables)
            if (!string.IsNullOrEmpty(Environment.GetEnvironmentVariable(own))) return $"glibc malloc, thresholds from {own}";
        try
        {
            // mallopt returns 1 when glibc took the value (musl's returns 0 and changes nothing).
            if (mallopt(MallocMmapThreshold, (int)MallocThresholdBytes) == 1 && mallopt(MallocTrimThreshold, (int)MallocThresholdBytes) == 1)
                return "glibc malloc, mmap/trim thresholds 1 GiB";
            return "malloc (mallopt refused the thresholds)";
        }
        catch (EntryPointNotFoundException) { return "malloc (no mallopt)"; }
    }

    /// <summary>What CPU convolutions run on in this process (for reports), e.g. "oneDNN, ISA capped at AVX (...)".</summary>
    public static string CpuConvolutions
    {
        get
        {
            EnsureCpuDefaults();
            return _cpuConvolutions!;
        }
    }

    /// <summary>Whether cuDNN's autotuner runs on CUDA: on unless <c>DDPM_CUDNN_BENCHMARK=0</c>.</summary>
    public static bool CudnnBenchmarkRequested => Flag(CudnnBenchmarkVariable) ?? true;

    private static string ChooseCpuConvolutions()
    {
        switch (Flag(OneDnnVariable))
        {
            case false:
                LibTorchSwitches.OneDnn = false;
                return $"libtorch's own kernels ({OneDnnVariable}=0)";
            case true:
                LibTorchSwitches.OneDnn = true;
                return $"oneDNN, unchecked ({OneDnnVariable}=1)";
        }
        string note = "";
        if (CpuHidesCacheHierarchy() && string.IsNullOrEmpty(Marshal.PtrToStringAnsi(getenv(OneDnnIsaVariable))))
        {
            setenv(OneDnnIsaVariable, "AVX", 1);
            note = ", ISA capped at AVX (the CPU reports no cache hierarchy)";
        }
        LibTorchSwitches.OneDnn = true;
        if (OneDnnSelfCheck.Passes()) return "oneDNN" + note;
        LibTorchSwitches.OneDnn = false;
        Console.Error.WriteLine("warning: oneDNN computes wrong convolutions on this CPU; using libtorch's own (slower) kernels " +
            $"({OneDnnVariable}=0 silences this, {OneDnnVariable}=1 forces oneDNN)");
        return "libtorch's own kernels (oneDNN failed its self-check)";
    }

    /// <summary>
    /// True on x86-64 when CPUID's deterministic cache parameters are empty: Intel's leaf 4, AMD's leaf 0x8000001D
    /// (on this project's VMs both are all zero, and the OS shows no /sys/devices/system/cpu/cpu0/cache).
    /// </summary>
    internal static bool CpuHidesCacheHierarchy()
    {
        if (!X86Base.IsSupported) return false;
        var (maxLeaf, ebx, ecx, edx) = X86Base.CpuId(0, 0);
        bool amd = ebx == 0x68747541 && edx == 0x69746E65 && ecx == 0x444D4163; // "AuthenticAMD"
        int leaf = amd ? unchecked((int)0x8000001D) : 4;
        int maxAvailable = amd ? X86Base.CpuId(unchecked((int)0x80000000), 0).Eax : maxLeaf;
        if ((uint)maxAvailable < (uint)leaf) return false; // the leaf does not exist: nothing hidden, just old
        var (eax, _, _, _) = X86Base.CpuId(leaf, 0);
        return (eax & 0x1F) == 0; // cache type "null" in the first sub-leaf: no level described
    }

    /// <summary>A 0/1 switch from the environment: null when unset.</summary>
    /// <exception cref="ArgumentException">the variable holds something other than 0 or 1.</exception>
    internal static bool? Flag(string variable) => Environment.GetEnvironmentVariable(variable) switch
    {
        "0" => false,
        "1" => true,
        null or "" => null,
        var other => throw new ArgumentException($"{variable}: expected 0 or 1, got '{other}'"),
    };

    // The process environment oneDNN reads (Environment.SetEnvironmentVariable does not reach it on Unix).
    [DllImport("libc")]
    private static extern IntPtr getenv(string name);

    [DllImport("libc")]
    private static extern int setenv(string name, string value, int overwrite);

    // glibc's <malloc.h>: M_TRIM_THRESHOLD = -1, M_MMAP_THRESHOLD = -3.
    private const int MallocTrimThreshold = -1, MallocMmapThreshold = -3;

    [DllImport("libc")]
    private static extern int mallopt(int parameter, int value);
}
