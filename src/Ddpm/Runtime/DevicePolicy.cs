using System.Runtime.InteropServices;
using System.Runtime.Intrinsics.X86;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Runtime;

/// <summary>
/// How libtorch is set up for a device, in one place so the CLI, the server and library users get the same numbers. The
/// host applies it with one call, <see cref="Apply"/>, before any model is built; the library changes nothing
/// process-wide by itself, and a model refuses to be built until the host has decided (<see cref="EnsureApplied"/>).
/// <para>CUDA: fp32 matmuls and convolutions on TF32 tensor cores (PyTorch's <c>allow_tf32</c>), and cuDNN's autotuner
/// unless <c>DDPM_CUDNN_BENCHMARK=0</c>.</para>
/// <para>CPU: oneDNN (inside libtorch 2.10) computes wrong convolutions on virtual machines whose CPUID hides the cache
/// hierarchy; its AVX kernels are exact there. So such a machine gets <c>DNNL_MAX_CPU_ISA=AVX</c> (unless the variable
/// is set), and a self-check compares oneDNN with libtorch's own kernels on the shapes that failed; if they disagree,
/// oneDNN is turned off for the process. <c>DDPM_ONEDNN=0</c> turns it off, <c>1</c> keeps it on without the
/// check.</para>
/// <para>Host memory (Linux, glibc): libtorch takes every CPU tensor from malloc, and glibc maps large blocks afresh
/// and returns freed memory, so each sampling step page-faults its activations in again. The policy raises glibc's mmap
/// and trim thresholds to 1 GiB (<c>DDPM_MALLOC=0</c>, or the user's own <c>MALLOC_*_THRESHOLD_</c>, leave malloc
/// alone).</para>
/// <para>Why and what it measured: docs/platform.md.</para>
/// </summary>
public static class DevicePolicy
{
    /// <summary>The variable that turns cuDNN's autotuner on (1, default) or off (0) for CUDA runs.</summary>
    public const string CudnnBenchmarkVariable = "DDPM_CUDNN_BENCHMARK";

    /// <summary>The variable that forces oneDNN off (0) or on without the self-check (1) for CPU
    /// convolutions.</summary>
    public const string OneDnnVariable = "DDPM_ONEDNN";

    /// <summary>oneDNN's own variable capping the instruction set its kernels use.</summary>
    public const string OneDnnIsaVariable = "DNNL_MAX_CPU_ISA";

    /// <summary>The variable that leaves glibc's malloc thresholds alone (0) or raises them (1, default).</summary>
    public const string MallocVariable = "DDPM_MALLOC";

    /// <summary>The mmap and trim thresholds the policy gives glibc's malloc.</summary>
    public const long MallocThresholdBytes = 1L << 30;

    /// <summary>glibc's own variables for the two thresholds: when the user set either, the policy leaves malloc
    /// alone.</summary>
    public static readonly IReadOnlyList<string> GlibcThresholdVariables = ["MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"];

    private static readonly object Gate = new();
    private static string? _cpuConvolutions;
    private static string? _hostAllocator;

    /// <summary>
    /// Sets libtorch and the process up for <paramref name="device"/>: the host calls this once at start, before
    /// building a model (idempotent; the CPU part runs for every device, once per process).
    /// </summary>
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
    /// The device a host asks for, set up with <see cref="Apply"/>: CUDA when <paramref name="cuda"/> is true, or null
    /// and a device is available; else the CPU.
    /// </summary>
    /// <exception cref="RequestException">CUDA asked for where none is available, or a DDPM_* variable not 0 or
    /// 1.</exception>
    public static Device Choose(bool? cuda)
    {
        var device = cuda ?? torch.cuda.is_available() ? CUDA : CPU;
        if (cuda == true && !torch.cuda.is_available())
            throw new RequestException("--device cuda: no CUDA device is available (set DDPM_LIBTORCH to PyTorch's torch/lib folder, " +
                "with a build made with -p:DdpmCpuLibTorch=false, e.g. scripts/bundle.sh)");
        try { Apply(device); }
        catch (ArgumentException e) { throw new RequestException(e.Message); }
        return device;
    }

    /// <summary>Whether the host has applied the policy in this process.</summary>
    public static bool Applied => _cpuConvolutions is not null;

    /// <summary>
    /// Refuses to go on until the host has applied the policy: oneDNN reads its instruction-set cap at its first use,
    /// so a model built before <see cref="Apply"/> could compute wrong convolutions on some machines. The U-Net's and
    /// the classifier's constructors call it.
    /// </summary>
    /// <exception cref="InvalidOperationException">the policy was not applied.</exception>
    public static void EnsureApplied()
    {
        if (!Applied)
            throw new InvalidOperationException("call Ddpm.Runtime.DevicePolicy.Apply(device) once, before building a model: it sets " +
                "libtorch up for the device (and checks oneDNN's CPU convolutions, which are wrong on some machines); see docs/library.md");
    }

    /// <summary>The CPU part of <see cref="Apply"/>, once per process.</summary>
    internal static void EnsureCpuDefaults()
    {
        if (_cpuConvolutions is not null) return;
        lock (Gate)
        {
            if (_cpuConvolutions is not null) return;
            _hostAllocator = ConfigureHostAllocator();
            _cpuConvolutions = ChooseCpuConvolutions();
        }
    }

    /// <summary>How host memory is allocated in this process (for reports), e.g. "glibc malloc, mmap/trim thresholds 1
    /// GiB".</summary>
    public static string HostAllocator => _hostAllocator ?? NotApplied;

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

    /// <summary>What CPU convolutions run on in this process (for reports), e.g. "oneDNN, ISA capped at AVX
    /// (...)".</summary>
    public static string CpuConvolutions => _cpuConvolutions ?? NotApplied;

    private const string NotApplied = "not set up (DevicePolicy.Apply was not called)";

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
