using System.Runtime.CompilerServices;

namespace Ddpm.Tests;

internal static class TestSetup
{
    /// <summary>
    /// Before any test: the test host must run on the patched TorchSharp.dll (its build patches it), so that no test,
    /// on any of xunit's threads, calls TorchSharp unprotected (docs/thread-safety.md). No escape hatch here.
    /// </summary>
    [ModuleInitializer]
    internal static void RequirePatchedTorchSharp()
    {
        if (Ddpm.Runtime.TorchSharpPatch.ProblemWithLoadedAssembly is { } problem) throw new InvalidOperationException(problem);
    }

    /// <summary>
    /// One intra-op thread per test: xunit already runs test classes in parallel, and on a small shared machine
    /// libtorch's default pool (one thread per core) spins against itself — measured 10× slower per training step.
    /// </summary>
    [ModuleInitializer]
    internal static void SingleThreadedTorch() => TorchSharp.torch.set_num_threads(1);

    /// <summary>The test host applies the library's device policy, as every host must before building a
    /// model.</summary>
    [ModuleInitializer]
    internal static void DevicePolicyApplied() => Ddpm.Runtime.DevicePolicy.Apply(TorchSharp.torch.CPU);
}
