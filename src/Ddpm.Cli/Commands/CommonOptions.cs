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

    public static Device ResolveDevice(string name) => name.ToLowerInvariant() switch
    {
        "auto" => cuda.is_available() ? CUDA : CPU,
        "cpu" => CPU,
        "cuda" => cuda.is_available() ? CUDA
            : throw new UsageException("--device cuda: no CUDA device is available (is a CUDA libtorch on the library path?)"),
        _ => throw new UsageException($"--device: unknown device '{name}' (expected cpu or cuda)"),
    };
}
