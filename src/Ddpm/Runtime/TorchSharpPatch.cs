using System.Reflection;

namespace Ddpm.Runtime;

/// <summary>
/// Whether the TorchSharp.dll this process loaded is the build-time patched one (build/TorchSharpKeepAlive; the Ddpm
/// package's targets patch every app's copy): each read of a Scalar's, Tensor's or Generator's handle keeps the wrapper
/// reachable through the native call that follows, so a collection started by another thread cannot let the finalizer
/// free it while libtorch reads it. The library's entry points call <see cref="EnsureApplied"/> and refuse to run on
/// a stock TorchSharp.dll. docs/thread-safety.md has the details.
/// </summary>
public static class TorchSharpPatch
{
    /// <summary>The marker the patch adds: <c>[assembly: AssemblyMetadata(MarkerKey, Version)]</c>.</summary>
    public const string MarkerKey = "Ddpm.HandleKeepAlive";

    /// <summary>The patch version this Ddpm expects (build/TorchSharpKeepAlive's KeepAlivePatch.Version).</summary>
    public const string Version = "2";

    /// <summary>
    /// <c>DDPM_ALLOW_UNPATCHED_TORCHSHARP=1</c> lets the library run on a stock TorchSharp.dll. It exists only for the
    /// race test's control arm (tests/Ddpm.KillTarget --race on a copy with the NuGet package's TorchSharp.dll), which
    /// shows that the race is real; nothing else should set it.
    /// </summary>
    public const string AllowUnpatchedVariable = "DDPM_ALLOW_UNPATCHED_TORCHSHARP";

    private static readonly Lazy<string?> Problem = new(FindProblem);
    private static readonly Lazy<Action> ReleaseKept = new(FindRelease);

    /// <summary>Null when the loaded TorchSharp.dll carries the patch, else what is wrong (one line).</summary>
    public static string? ProblemWithLoadedAssembly => Problem.Value;

    /// <summary>Whether the loaded TorchSharp.dll carries the patch.</summary>
    public static bool IsApplied => Problem.Value is null;

    /// <summary>
    /// Returns when the loaded TorchSharp.dll carries the patch (checked once per process), or when
    /// <see cref="AllowUnpatchedVariable"/> is 1; throws otherwise.
    /// </summary>
    /// <exception cref="TorchSharpNotPatchedException">TorchSharp.dll is not patched (named in the
    /// message).</exception>
    public static void EnsureApplied()
    {
        if (Problem.Value is { } problem && !AllowedUnpatched) throw new TorchSharpNotPatchedException(problem);
    }

    /// <summary>
    /// Lets go of the wrappers this thread's handle reads kept (the patch's <c>HandleKeepAlive.Release</c>; nothing on
    /// an unpatched TorchSharp.dll). Only where none of this thread's native calls is in flight, e.g. between two steps
    /// of a loop: kept wrappers survive collections, and undisposed tensors among them would keep their native memory
    /// into older generations.
    /// </summary>
    public static void ReleaseThisThreadsKept() => ReleaseKept.Value();

    private static Action FindRelease()
    {
        if (Problem.Value is not null) return () => { };
        var release = typeof(TorchSharp.Scalar).Assembly.GetType("TorchSharp.HandleKeepAlive")
            ?.GetMethod("Release", BindingFlags.Static | BindingFlags.NonPublic, Type.EmptyTypes);
        return release is null ? () => { } : release.CreateDelegate<Action>();
    }

    private static bool AllowedUnpatched => Environment.GetEnvironmentVariable(AllowUnpatchedVariable) == "1";

    private static string? FindProblem()
    {
        var assembly = typeof(TorchSharp.Scalar).Assembly;
        string where = string.IsNullOrEmpty(assembly.Location) ? assembly.FullName ?? "TorchSharp" : assembly.Location;
        string Fail(string what) => $"TorchSharp.dll at {where} {what}: without the patch another thread's garbage " +
            "collection can free a Scalar or Tensor while libtorch reads it. Build the app through the Ddpm package " +
            "(its buildTransitive targets patch TorchSharp.dll) or this repository's build/Ddpm.Native.targets";
        var marker = assembly.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == MarkerKey);
        if (marker is null) return Fail("is not patched (no Ddpm.HandleKeepAlive marker)");
        if (marker.Value != Version) return Fail($"carries version {marker.Value} of the patch, this Ddpm needs {Version}");
        // The marker is a promise; the getters are the patch. Each must begin by handing its object to Keep.
        foreach (var type in new[] { typeof(TorchSharp.Scalar), typeof(TorchSharp.torch.Tensor), typeof(TorchSharp.torch.Generator) })
        {
            var getter = type.GetProperty("Handle", BindingFlags.Instance | BindingFlags.Public | BindingFlags.NonPublic)?.GetMethod;
            if (getter is null || !CallsKeepFirst(getter)) return Fail($"has the marker but {type.Name}.Handle does not keep its object alive");
        }
        return null;
    }

    /// <summary>Whether the getter's IL begins <c>ldarg.0; call TorchSharp.HandleKeepAlive::Keep</c>.</summary>
    private static bool CallsKeepFirst(MethodInfo getter)
    {
        var il = getter.GetMethodBody()?.GetILAsByteArray();
        if (il is not { Length: >= 6 } || il[0] != 0x02 || il[1] != 0x28) return false; // ldarg.0, call <token>
        try
        {
            var callee = getter.Module.ResolveMethod(BitConverter.ToInt32(il, 2));
            return callee is { Name: "Keep", DeclaringType.FullName: "TorchSharp.HandleKeepAlive" };
        }
        catch (ArgumentException)
        {
            return false;
        }
    }
}

/// <summary>The loaded TorchSharp.dll lacks the build's keep-alive patch (docs/thread-safety.md); the message names
/// it.</summary>
public sealed class TorchSharpNotPatchedException(string message) : InvalidOperationException(message);
