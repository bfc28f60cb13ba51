using System.Runtime.CompilerServices;

namespace Ddpm.Tests;

internal static class TestSetup
{
    /// <summary>
    /// One intra-op thread per test: xunit already runs test classes in parallel, and on a small shared machine
    /// libtorch's default pool (one thread per core) spins against itself — measured 10× slower per training step.
    /// </summary>
    [ModuleInitializer]
    internal static void SingleThreadedTorch() => TorchSharp.torch.set_num_threads(1);

    /// <summary>The test host applies the library's device policy, as every host must before building a model.</summary>
    [ModuleInitializer]
    internal static void DevicePolicyApplied() => Ddpm.Runtime.DevicePolicy.Apply(TorchSharp.torch.CPU);
}
