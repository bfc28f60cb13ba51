using System.CommandLine;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Cli.Commands;

/// <summary>Options several commands share, and their interpretation.</summary>
internal static class CommonOptions
{
    public static Option<string> DeviceOption() => new("--device")
    {
        Description = "cpu or cuda (default: cuda when available, else cpu)",
        DefaultValueFactory = _ => "auto",
    };

    public static Device ResolveDevice(string name)
    {
        var device = name.ToLowerInvariant() switch
        {
            "auto" => cuda.is_available() ? CUDA : CPU,
            "cpu" => CPU,
            "cuda" => cuda.is_available() ? CUDA
                : throw new UsageException("--device cuda: no CUDA device is available (set DDPM_LIBTORCH to PyTorch's torch/lib folder, " +
                    "with a build made with -p:DdpmCpuLibTorch=false, e.g. scripts/bundle.sh)"),
            _ => throw new UsageException($"--device: unknown device '{name}' (expected cpu or cuda)"),
        };
        try { Ddpm.Runtime.DevicePolicy.Apply(device); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        return device;
    }
}
