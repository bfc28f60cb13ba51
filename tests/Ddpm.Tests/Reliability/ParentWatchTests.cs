using System.Diagnostics;
using Ddpm.Runtime;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// Issue 19 case 12: a child of a crashed test host must not live on (the kill test's child once wrote checkpoints at
/// full CPU for 30 minutes after the host died). The kill target, started with <see cref="ParentWatch.Variable"/>,
/// exits when its parent disappears (a fake parent, a shell, killed with SIGKILL) or when its stdin closes.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Process)]
public class ParentWatchTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("parentwatch");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static bool Gone(int pid) => !ParentWatch.IsAlive(pid);

    private static void WaitGone(int pid, TimeSpan timeout, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!Gone(pid))
        {
            if (clock.Elapsed > timeout)
            {
                try { Process.GetProcessById(pid).Kill(); } catch (ArgumentException) { }
                throw new Xunit.Sdk.XunitException($"the child {pid} still ran {timeout.TotalSeconds:F0} s after {what}");
            }
            Thread.Sleep(50);
        }
    }

    [Fact]
    public void The_kill_target_exits_when_its_parent_is_killed()
    {
        // The fake parent: a shell that starts the kill target in the background (stdin kept on our pipe, so only the
        // parent's death can stop it), prints its PID and waits.
        var info = new ProcessStartInfo("sh")
        {
            RedirectStandardInput = true, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false,
        };
        info.ArgumentList.Add("-c");
        info.ArgumentList.Add($"exec 3<&0; {ParentWatch.Variable}=$$ dotnet \"$0\" \"$1\" 1 <&3 & echo \"child $!\"; wait");
        info.ArgumentList.Add(ChildProcess.KillTargetDll);
        info.ArgumentList.Add(Path.Combine(_dir, "run"));
        using var shell = new ChildProcess.Running(ChildProcess.Launch(info));
        shell.WaitUntil(() => shell.Stdout.Contains("ready"), TimeSpan.FromSeconds(120), "the child's first checkpoint");
        int child = int.Parse(shell.Stdout.Split('\n').First(l => l.StartsWith("child ")).Split(' ')[1]);
        Assert.False(Gone(child));

        ChildProcess.Signal(shell.Process, ChildProcess.Sigkill);
        // With a timeout: the parameterless wait also waits for the end of the shell's stdout, which the child holds
        // open.
        Assert.True(shell.Process.WaitForExit(TimeSpan.FromSeconds(30)), "the fake parent survived SIGKILL");
        WaitGone(child, TimeSpan.FromSeconds(30), "its parent was killed");
    }

    [Fact]
    public void The_kill_target_exits_when_its_stdin_closes()
    {
        using var child = ChildProcess.Start(ChildProcess.KillTargetDll, Path.Combine(_dir, "run"), "1");
        child.WaitUntil(() => child.Stdout.Contains("ready"), TimeSpan.FromSeconds(120), "the child's first checkpoint");
        child.Process.StandardInput.Close();
        Assert.Equal(ParentWatch.ExitCode, child.WaitForExit(TimeSpan.FromSeconds(30)));
        Assert.Contains("standard input closed", child.Stderr);
    }
}
