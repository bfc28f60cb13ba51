using System.Diagnostics;
using static TorchSharp.torch;

namespace Ddpm.Benchmarks;

/// <summary>The card's name and memory as nvidia-smi reports them (TorchSharp exposes no allocator
/// statistics).</summary>
internal static class GpuInfo
{
    /// <summary>The CUDA card's name, or null on other devices.</summary>
    public static string? Name(Device device) => device.type != TorchSharp.DeviceType.CUDA ? null
        : NvidiaSmi("--query-gpu=name --format=csv,noheader") is { Length: > 0 } name ? name.Split('\n')[0] : "GPU name not reported";

    /// <summary>
    /// Device memory in use by this process (the caching allocator's reserve plus the CUDA context), else the whole
    /// card's used memory, marked as such; null on other devices.
    /// </summary>
    public static string? Memory(Device device)
    {
        if (device.type != TorchSharp.DeviceType.CUDA) return null;
        var apps = NvidiaSmi("--query-compute-apps=pid,used_memory --format=csv,noheader");
        if (apps is null) return "nvidia-smi unavailable";
        var mine = apps.Split('\n').FirstOrDefault(l => l.StartsWith(Environment.ProcessId + ",", StringComparison.Ordinal));
        if (mine is not null) return mine.Split(',')[1].Trim();
        var total = NvidiaSmi("--query-gpu=memory.used --format=csv,noheader");
        return total is null ? "not reported" : $"{total.Split('\n')[0].Trim()} (whole card)";
    }

    private static string? NvidiaSmi(string arguments)
    {
        try
        {
            var psi = new ProcessStartInfo("nvidia-smi", arguments) { RedirectStandardOutput = true, RedirectStandardError = true };
            using var p = Process.Start(psi)!;
            var text = p.StandardOutput.ReadToEnd();
            p.WaitForExit(5000);
            return text.Trim();
        }
        catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
        {
            return null;
        }
    }
}
