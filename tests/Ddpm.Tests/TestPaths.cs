namespace Ddpm.Tests;

/// <summary>Locates the repository root and the PyTorch fixtures in it; a missing fixture fails the test.</summary>
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

    /// <summary><c>tests/fixtures/pytorch</c>: made by <c>tests/fixtures/make_pytorch_fixtures.py</c> (see its
    /// README.md).</summary>
    public static string FixturesDir => Path.Combine(RepoRoot, "tests", "fixtures", "pytorch");

    /// <summary>The path of a fixture file; throws (failing the test, never skipping it) when it is absent.</summary>
    public static string Fixture(string name)
    {
        var path = Path.Combine(FixturesDir, name);
        if (!File.Exists(path))
            throw new FileNotFoundException(
                $"PyTorch fixture '{name}' not found at {path} (tests/fixtures/make_pytorch_fixtures.py makes it)", path);
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
