namespace Ddpm.Cli.Commands;

/// <summary>The <c>--device</c> values.</summary>
internal enum DeviceChoice
{
    /// <summary>CUDA when a device is available, else the CPU.</summary>
    Auto,
    Cpu,
    Cuda,
}
