namespace Ddpm.Tests;

/// <summary>Locates the repository root and the shared PyTorch fixtures; a missing fixture fails the test.</summary>
public static class TestPaths
{
    public static string RepoRoot
    {
        get
        {
            var dir = new DirectoryInfo(AppContext.BaseDirectory);
            while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Ddpm.slnx"))) dir = dir.Parent;
            return dir?.FullName ?? throw new InvalidOperationException(
                $"could not find Ddpm.slnx in any folder above {AppContext.BaseDirectory}");
        }
    }

    public static string FixturesDir => Path.GetFullPath(Path.Combine(RepoRoot, "..", "shared", "fixtures", "pytorch-ddpm"));

    /// <summary>The path of a fixture file; throws (failing the test, never skipping it) when it is absent.</summary>
    public static string Fixture(string name)
    {
        var path = Path.Combine(FixturesDir, name);
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"PyTorch fixture '{name}' not found at {path}. The tests expect the shared/ folder as a sibling of the " +
                "repository (../shared/fixtures/pytorch-ddpm relative to the folder holding Ddpm.slnx).", path);
        return path;
    }

    /// <summary>A fresh empty temporary folder.</summary>
    public static string TempDir(string prefix)
    {
        var path = Path.Combine(Path.GetTempPath(), $"ddpm-tests-{prefix}-{Guid.NewGuid():N}");
        Directory.CreateDirectory(path);
        return path;
    }
}
