using System.Diagnostics;

namespace Ddpm.Tests.Runtime;

/// <summary>
/// Issue 19 case 11: the inline MSBuild task of build/Ddpm.Native.targets (compiled from build/MarkGlibcxxWeak.cs by
/// RoslynCodeTaskFactory, with nullable warnings on) builds without a warning; a fresh clone's first build printed
/// CS8600.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Process)]
public class NativeTargetsBuildTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("msbuild");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void The_glibcxx_patch_task_compiles_and_runs_without_warnings()
    {
        var targets = Path.Combine(TestPaths.RepoRoot, "build", "Ddpm.Native.targets");
        var empty = Directory.CreateDirectory(Path.Combine(_dir, "empty")).FullName;
        var project = Path.Combine(_dir, "check.proj");
        File.WriteAllText(project, $"""
            <Project>
              <Import Project="{targets}" />
              <Target Name="Check"><MarkGlibcxxWeak Directory="{empty}" Force="false" /></Target>
            </Project>
            """);
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in new[] { "msbuild", project, "-t:Check", "-nologo", "-nodeReuse:false", "-v:m" }) info.ArgumentList.Add(a);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment[Ddpm.Runtime.ParentWatch.Variable] = null;
        using var msbuild = new Reliability.ChildProcess.Running(Reliability.ChildProcess.Launch(info));
        int code = msbuild.WaitForExit(TimeSpan.FromSeconds(180));
        var output = msbuild.Stdout + msbuild.Stderr;
        Assert.True(code == 0, output);
        Assert.DoesNotContain("warning", output, StringComparison.OrdinalIgnoreCase);
        Assert.DoesNotContain("error", output, StringComparison.OrdinalIgnoreCase);
    }
}
