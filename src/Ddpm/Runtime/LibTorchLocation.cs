using System.Runtime.InteropServices;

namespace Ddpm.Runtime;

/// <summary>
/// Uses the libtorch of an existing PyTorch installation (e.g. <c>.../site-packages/torch/lib</c>, which has the CUDA
/// libraries) instead of the CPU libtorch NuGet package. The libraries are loaded by full path before TorchSharp
/// starts; its native shim then binds to them by soname. Build without the CPU package
/// (<c>-p:DdpmCpuLibTorch=false</c>): two libtorch copies in one process abort at start.
/// </summary>
public static class LibTorchLocation
{
    /// <summary>The environment variable naming a libtorch folder (checked by
    /// <see cref="UseFromEnvironment"/>).</summary>
    public const string Variable = "DDPM_LIBTORCH";

    private static readonly string[] Required = ["libc10.so", "libtorch_cpu.so", "libtorch.so"];
    private static readonly string[] LoadOrder = ["libc10.so", "libc10_cuda.so", "libtorch_cpu.so", "libtorch_cuda.so", "libtorch.so"];

    /// <summary>Loads libtorch from <c>$DDPM_LIBTORCH</c> when set; returns the folder used, or null.</summary>
    public static string? UseFromEnvironment()
    {
        var dir = Environment.GetEnvironmentVariable(Variable);
        if (string.IsNullOrWhiteSpace(dir)) return null;
        Use(dir);
        return dir;
    }

    /// <summary>Loads libc10, libtorch_cpu, libtorch (and the CUDA parts when present) from
    /// <paramref name="directory"/>.</summary>
    public static void Use(string directory)
    {
        if (!Directory.Exists(directory))
            throw new DirectoryNotFoundException($"{Variable}: libtorch folder '{directory}' does not exist");
        foreach (var name in Required)
            if (!File.Exists(Path.Combine(directory, name)))
                throw new FileNotFoundException($"{Variable}: '{directory}' has no {name}; point it at PyTorch's torch/lib folder");
        foreach (var name in LoadOrder)
        {
            var path = Path.Combine(directory, name);
            if (File.Exists(path)) NativeLibrary.Load(path);
        }
    }
}
