using System.Text.Json;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// The NuGet package's TorchSharp.dll (unpatched) and copies of a built program that load it: the race test's control
/// arm, and the check that Ddpm refuses it.
/// </summary>
internal static class StockTorchSharp
{
    /// <summary>
    /// The package's TorchSharp.dll that the build patched for <paramref name="programDll"/>: its deps.json names the
    /// package folder and the asset; the package lies in NUGET_PACKAGES or ~/.nuget/packages.
    /// </summary>
    public static string PathFor(string programDll)
    {
        var depsPath = Path.ChangeExtension(programDll, ".deps.json");
        using var deps = JsonDocument.Parse(File.ReadAllText(depsPath));
        var (id, library) = deps.RootElement.GetProperty("libraries").EnumerateObject()
            .Where(p => p.Name.StartsWith("TorchSharp/", StringComparison.Ordinal)).Select(p => (p.Name, p.Value)).Single();
        string asset = deps.RootElement.GetProperty("targets").EnumerateObject().First().Value.GetProperty(id)
            .GetProperty("runtime").EnumerateObject().Select(p => p.Name).Single(n => n.EndsWith("TorchSharp.dll", StringComparison.Ordinal));
        var packages = Environment.GetEnvironmentVariable("NUGET_PACKAGES") is { Length: > 0 } set ? set
            : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".nuget", "packages");
        var path = Path.Combine(packages, library.GetProperty("path").GetString()!, asset);
        if (!File.Exists(path)) throw new FileNotFoundException($"the NuGet package's TorchSharp.dll is not at {path} (restore the solution)", path);
        return path;
    }

    /// <summary>
    /// A copy of <paramref name="programDll"/>'s folder in <paramref name="into"/> with the package's TorchSharp.dll:
    /// the managed files copied (the host resolves symbolic links, so linked ones would load from the original folder),
    /// the native libraries under runtimes/ linked (libtorch alone is 600 MB). Returns the copy's program path.
    /// </summary>
    public static string CopyWithStock(string programDll, string into)
    {
        var from = Path.GetDirectoryName(programDll)!;
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var relative = Path.GetRelativePath(from, file);
            var target = Path.Combine(into, relative);
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            if (relative.Contains(Path.DirectorySeparatorChar)) File.CreateSymbolicLink(target, file);
            else File.Copy(file, target);
        }
        File.Copy(PathFor(programDll), Path.Combine(into, "TorchSharp.dll"), overwrite: true);
        return Path.Combine(into, Path.GetFileName(programDll));
    }
}
