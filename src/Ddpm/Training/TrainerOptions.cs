using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>
/// How a <see cref="Trainer"/> runs, fixed at construction (what it trains is the
/// <see cref="Configuration.DdpmConfig"/>). None but <see cref="Parallel"/> changes the weights a run produces. Null
/// means the device's default.
/// </summary>
public sealed record TrainerOptions
{
    /// <summary>
    /// Steps between host reads of the losses and non-finite flags (each read waits for the device): default 1 on the
    /// CPU, where reading costs nothing, 50 on CUDA. With <c>on_nonfinite: stop</c> a bad step is reported at the next
    /// read (its update was never applied). Must be at least 1.
    /// </summary>
    public int? SyncEvery { get; init; }

    /// <summary>
    /// Whether a step's update is made conditional on its finiteness flag on the device (no host wait, a few extra
    /// passes over the weights; the default everywhere but the CPU) or decided on the host after reading the flag
    /// (in-place updates; the default on the CPU, where reading costs nothing).
    /// </summary>
    public bool? MaskOnDevice { get; init; }

    /// <summary>The <see cref="SyncEvery"/> a trainer on <paramref name="device"/> uses: as given, else 50 on CUDA and
    /// 1 elsewhere.</summary>
    public int SyncEveryOn(Device device) => SyncEvery ?? (device.type == DeviceType.CUDA ? 50 : 1);

    /// <summary>The <see cref="MaskOnDevice"/> a trainer on <paramref name="device"/> uses: as given, else true except
    /// on the CPU.</summary>
    public bool MaskOnDeviceOn(Device device) => MaskOnDevice ?? device.type != DeviceType.CPU;

    /// <summary>
    /// Data-parallel training over several processes (<c>mpirun -n N ddpm train</c>): <c>batch_size</c> is then each
    /// rank's part and the steps are those of one process with the global batch N·B. The one option that changes what a
    /// run computes. Null: one process.
    /// </summary>
    public Distributed.DataParallel? Parallel { get; init; }

    /// <summary>Receives warnings (e.g. a skipped step under <c>on_nonfinite: skip</c>); null = silent.</summary>
    public Action<string>? Warn { get; init; }
}
