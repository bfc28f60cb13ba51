namespace Ddpm.Tests.Data;

/// <summary>A fresh folder under the system temp dir, deleted on dispose.</summary>
public sealed class TempFolder : IDisposable
{
    public string Path { get; } = Directory.CreateTempSubdirectory("ddpm-data-test-").FullName;

    public string File(string name) => System.IO.Path.Combine(Path, name);

    /// <summary>Names of every file below the folder (relative), sorted: used to prove nothing half-written was
    /// left.</summary>
    public IReadOnlyList<string> Contents() =>
        Directory.GetFiles(Path, "*", SearchOption.AllDirectories).Select(f => System.IO.Path.GetRelativePath(Path, f)).Order().ToList();

    public void Dispose() => Directory.Delete(Path, recursive: true);
}
