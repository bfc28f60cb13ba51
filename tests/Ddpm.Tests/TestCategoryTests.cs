namespace Ddpm.Tests;

public partial class TestCategoryTests
{
    [System.Text.RegularExpressions.GeneratedRegex(@"(?<![A-Za-z])Process\.Start\(|new Process\b")]
    private static partial System.Text.RegularExpressions.Regex StartsProcessRegex();
    private static readonly System.Text.RegularExpressions.Regex StartsProcess = StartsProcessRegex();

    /// <summary>
    /// The fast subset's guard holds only if every process a test starts goes through
    /// <see cref="Reliability.ChildProcess"/> (whose launcher refuses in the fast run): no other test file may start
    /// one itself.
    /// </summary>
    [Fact]
    public void Only_the_child_process_launcher_starts_processes()
    {
        var root = Path.Combine(TestPaths.RepoRoot, "tests", "Ddpm.Tests");
        var starters = Directory.EnumerateFiles(root, "*.cs", SearchOption.AllDirectories)
            .Where(f => !f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}")
                && Path.GetFileName(f) is not ("ChildProcess.cs" or "TestCategoryTests.cs"))
            .Where(f => StartsProcess.IsMatch(File.ReadAllText(f)))
            .Select(f => Path.GetRelativePath(root, f)).ToList();
        Assert.Empty(starters);
    }
}
