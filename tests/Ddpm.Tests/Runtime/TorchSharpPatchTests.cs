using System.Diagnostics;
using System.Reflection;
using System.Runtime.CompilerServices;
using Ddpm.Runtime;
using Ddpm.Tests.Reliability;
using TorchSharp;

namespace Ddpm.Tests.Runtime;

/// <summary>
/// The keep-alive patch of TorchSharp.dll (build/TorchSharpKeepAlive, docs/thread-safety.md): this test host runs on
/// the patched copy; a wrapper whose handle was read stays reachable for exactly the ring's 1,024 further reads on
/// its thread, then is released (at once when the thread's ring is released); the tool's output is deterministic,
/// idempotent, keeps the assembly's identity, and is the very file the build put beside the tests.
/// </summary>
public sealed class TorchSharpPatchTests : IDisposable
{
    private const int RingSize = 1024; // KeepAlivePatch.RingSize
    private static readonly string Tool = Path.Combine(TestPaths.RepoRoot, "build", "TorchSharpKeepAlive", "bin", "tool", "TorchSharpKeepAlive.dll");
    private static readonly string Stock = StockTorchSharp.PathFor(typeof(TorchSharpPatchTests).Assembly.Location);
    private static readonly MethodInfo ScalarHandle =
        typeof(Scalar).GetProperty("Handle", BindingFlags.Instance | BindingFlags.NonPublic)!.GetMethod!;
    private readonly string _dir = TestPaths.TempDir("keepalive");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_test_host_runs_on_the_patched_TorchSharp_dll_with_the_packages_identity()
    {
        Assert.Null(TorchSharpPatch.ProblemWithLoadedAssembly);
        Assert.True(TorchSharpPatch.IsApplied);
        TorchSharpPatch.EnsureApplied();
        var loaded = typeof(Scalar).Assembly;
        Assert.Equal(Path.Combine(AppContext.BaseDirectory, "TorchSharp.dll"), loaded.Location);
        Assert.Equal(AssemblyName.GetAssemblyName(Stock).FullName, loaded.GetName().FullName); // name, version, public key
        Assert.Equal(TorchSharpPatch.Version,
            loaded.GetCustomAttributes<AssemblyMetadataAttribute>().Single(a => a.Key == TorchSharpPatch.MarkerKey).Value);
    }

    /// <summary>A Scalar made and handed to "native code" (its handle read) in a frame that then returns.</summary>
    [MethodImpl(MethodImplOptions.NoInlining)]
    private static WeakReference ReadHandleAndDrop()
    {
        var scalar = 1.5.ToScalar();
        Assert.NotEqual(IntPtr.Zero, (IntPtr)ScalarHandle.Invoke(scalar, null)!);
        return new WeakReference(scalar);
    }

    private static bool SurvivesCollections(WeakReference weak)
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
        return weak.IsAlive;
    }

    [Fact]
    public void A_Scalar_whose_handle_was_read_stays_reachable_for_the_rings_reads_on_its_thread_then_is_released()
    {
        using var other = 2.5.ToScalar();
        var weak = ReadHandleAndDrop();
        Assert.True(SurvivesCollections(weak), "the Scalar was collected right after its handle was read");
        for (int i = 0; i < RingSize - 1; i++) ScalarHandle.Invoke(other, null);
        Assert.True(SurvivesCollections(weak), $"the Scalar was released before {RingSize} reads");
        // Another thread's reads do not move this thread's ring.
        var reader = new Thread(() => { for (int i = 0; i < 4 * RingSize; i++) ScalarHandle.Invoke(other, null); });
        reader.Start();
        reader.Join();
        Assert.True(SurvivesCollections(weak), "another thread's reads released this thread's Scalar");
        ScalarHandle.Invoke(other, null);
        Assert.False(SurvivesCollections(weak), $"the Scalar is still kept after {RingSize} more reads: the ring leaks");
    }

    [Fact]
    public void Releasing_this_threads_ring_lets_a_kept_Scalar_go_at_once()
    {
        var weak = ReadHandleAndDrop();
        Assert.True(SurvivesCollections(weak), "the Scalar was collected right after its handle was read");
        TorchSharpPatch.ReleaseThisThreadsKept();
        Assert.False(SurvivesCollections(weak), "the Scalar is still kept after its thread's ring was released");
    }

    private (int Code, string Output) RunTool(params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(Tool);
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        using var tool = new ChildProcess.Running(ChildProcess.Launch(info));
        int code = tool.WaitForExit(TimeSpan.FromSeconds(120));
        return (code, tool.Stdout + tool.Stderr);
    }

    [Fact]
    [Trait(TestCategory.Name, TestCategory.Process)]
    public void The_tool_is_deterministic_idempotent_and_wrote_the_copy_beside_the_tests()
    {
        string first = Path.Combine(_dir, "1", "TorchSharp.dll"), second = Path.Combine(_dir, "2", "TorchSharp.dll");
        string again = Path.Combine(_dir, "3", "TorchSharp.dll");
        var (code, listing) = RunTool("patch", Stock, first, "--verbose");
        Assert.True(code == 0, listing);
        // The three getters, and the methods that read the handle field and then call native code.
        foreach (var changed in new[]
                 {
                     "getter: System.IntPtr TorchSharp.Scalar::get_Handle()", "getter: System.IntPtr TorchSharp.torch/Tensor::get_Handle()",
                     "getter: System.IntPtr TorchSharp.torch/Generator::get_Handle()", "field read: System.Span`1<System.Byte> TorchSharp.torch/Tensor::get_bytes()",
                     "TorchSharp.torch/Tensor::WriteBytesToStream(", "TorchSharp.torch/Tensor::ReadBytesFromStream(", "TorchSharp.torch/Tensor::ormqr(",
                 })
            Assert.Contains(changed, listing);
        Assert.Equal(0, RunTool("patch", Stock, second).Code);
        Assert.Equal(0, RunTool("patch", first, again).Code);
        var bytes = File.ReadAllBytes(first);
        Assert.Equal(bytes, File.ReadAllBytes(second));
        Assert.Equal(bytes, File.ReadAllBytes(again));
        Assert.Equal(bytes, File.ReadAllBytes(Path.Combine(AppContext.BaseDirectory, "TorchSharp.dll")));
        Assert.NotEqual(bytes, File.ReadAllBytes(Stock));
        Assert.Equal(AssemblyName.GetAssemblyName(Stock).FullName, AssemblyName.GetAssemblyName(first).FullName);

        Assert.Equal((0, $"{first}: patched, version {TorchSharpPatch.Version}\n"), RunTool("check", first));
        Assert.Equal((1, $"{Stock}: not patched\n"), RunTool("check", Stock));
        var (badCode, bad) = RunTool("patch", Path.Combine(_dir, "missing.dll"), Path.Combine(_dir, "out.dll"));
        Assert.Equal(2, badCode);
        Assert.StartsWith("error: TorchSharpKeepAlive: ", bad);
        Assert.Single(bad.TrimEnd().Split('\n'));
    }
}
