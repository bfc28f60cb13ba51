using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Ddpm.Tests.Reliability;

/// <summary>Starts the built CLI or the kill target as child processes and sends them POSIX signals.</summary>
internal static class ChildProcess
{
    public const int Sigint = 2, Sigkill = 9, Sigterm = 15, Sigcont = 18, Sigstop = 19; // Linux x86-64 and arm64

    /// <summary>Whether the long variants run (<c>DDPM_LONG_TESTS=1</c>).</summary>
    public static bool LongTests => Environment.GetEnvironmentVariable("DDPM_LONG_TESTS") == "1";

    /// <summary>bin/&lt;Configuration&gt;/&lt;tfm&gt; of the test assembly, to find sibling projects' outputs of the
    /// same build.</summary>
    private static (string Configuration, string Tfm) BuildFlavour()
    {
        var tfmDir = new DirectoryInfo(AppContext.BaseDirectory.TrimEnd(Path.DirectorySeparatorChar));
        return (tfmDir.Parent!.Name, tfmDir.Name);
    }

    private static string Output(string projectDir, string dll)
    {
        var (configuration, tfm) = BuildFlavour();
        var path = Path.Combine(TestPaths.RepoRoot, projectDir, "bin", configuration, tfm, dll);
        if (!File.Exists(path)) throw new FileNotFoundException($"{dll} not built at {path} (the test project references it, so build the tests)", path);
        return path;
    }

    public static string CliDll => Output(Path.Combine("src", "Ddpm.Cli"), "Ddpm.Cli.dll");
    public static string KillTargetDll => Output(Path.Combine("tests", "Ddpm.KillTarget"), "Ddpm.KillTarget.dll");

    /// <summary>
    /// Starts <c>dotnet &lt;dll&gt; args</c> with stdout and stderr collected in the background. The child dies with
    /// this test host (<see cref="Ddpm.Runtime.ParentWatch"/>): it watches this process's id and its stdin, a pipe only
    /// we hold.
    /// </summary>
    public static Running Start(string dll, params string[] args) => Start(dll, new Dictionary<string, string?>(), args);

    /// <summary>The same with <paramref name="environment"/> set for the child (a null value removes the
    /// variable).</summary>
    public static Running Start(string dll, IReadOnlyDictionary<string, string?> environment, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        info.ArgumentList.Add(dll);
        foreach (var a in args) info.ArgumentList.Add(a);
        foreach (var (name, value) in environment)
            if (value is null) info.Environment.Remove(name);
            else info.Environment[name] = value;
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment[Ddpm.Runtime.ParentWatch.Variable] = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return new Running(Launch(info));
    }

    /// <summary>
    /// <see cref="Start(string, string[])"/> under an open-file limit of <paramref name="openFiles"/> (bash's <c>ulimit
    /// -n</c> sets the soft and the hard limit, as an administrator's would).
    /// </summary>
    public static Running StartLimited(int openFiles, string dll, params string[] args)
    {
        var info = new ProcessStartInfo("bash")
        {
            RedirectStandardOutput = true, RedirectStandardError = true, RedirectStandardInput = true, UseShellExecute = false,
        };
        foreach (var a in new[] { "-c", $"ulimit -n {openFiles} && exec dotnet \"$0\" \"$@\"", dll }.Concat(args)) info.ArgumentList.Add(a);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        info.Environment[Ddpm.Runtime.ParentWatch.Variable] = Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return new Running(Launch(info));
    }

    /// <summary>
    /// Starts a process: the one place the tests do (the fast subset refuses, naming the trait a test that starts
    /// processes needs, <see cref="TestCategory.Process"/>).
    /// </summary>
    public static Process Launch(ProcessStartInfo info)
    {
        if (TestCategory.FastRun)
            throw new InvalidOperationException($"the fast subset starts no processes ({info.FileName}): give the test " +
                $"[Trait(TestCategory.Name, TestCategory.Process)]");
        return Process.Start(info) ?? throw new InvalidOperationException($"could not start {info.FileName}");
    }

    /// <summary>The id of a process that has exited (it ran <c>true</c>), e.g. for a stale lock or temporary.</summary>
    public static int DeadPid()
    {
        using var gone = Process.Start(new ProcessStartInfo("true") { UseShellExecute = false })!;
        gone.WaitForExit();
        return gone.Id;
    }

    /// <summary>Sends <paramref name="signal"/> with libc's kill(2) (Process.Kill can only send SIGKILL).</summary>
    public static void Signal(Process process, int signal)
    {
        if (Kill(process.Id, signal) != 0) throw new InvalidOperationException($"kill({process.Id}, {signal}) failed: errno {Marshal.GetLastPInvokeError()}");
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    public sealed class Running : IDisposable
    {
        private readonly StringBuilder _out = new(), _err = new();
        private readonly object _lock = new();
        public Process Process { get; }

        public Running(Process process)
        {
            Process = process;
            process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (_lock) _out.AppendLine(e.Data); };
            process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (_lock) _err.AppendLine(e.Data); };
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
        }

        public string Stdout { get { lock (_lock) return _out.ToString(); } }
        public string Stderr { get { lock (_lock) return _err.ToString(); } }

        /// <summary>Waits until <paramref name="condition"/> holds; fails (killing the child) when it exits first or
        /// time runs out.</summary>
        public void WaitUntil(Func<bool> condition, TimeSpan timeout, string what)
        {
            var clock = Stopwatch.StartNew();
            while (!condition())
            {
                if (Process.HasExited && !condition())
                    throw new Xunit.Sdk.XunitException($"child exited ({Process.ExitCode}) before {what}.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
                if (clock.Elapsed > timeout)
                {
                    Process.Kill();
                    throw new Xunit.Sdk.XunitException($"timed out after {timeout.TotalSeconds:F0} s waiting for {what}.\nstdout:\n{Stdout}\nstderr:\n{Stderr}");
                }
                Thread.Sleep(5);
            }
        }

        public int WaitForExit(TimeSpan timeout)
        {
            if (!Process.WaitForExit(timeout))
            {
                Process.Kill();
                throw new Xunit.Sdk.XunitException($"child did not exit within {timeout.TotalSeconds:F0} s.\nstderr:\n{Stderr}");
            }
            Process.WaitForExit(); // drains the output readers
            return Process.ExitCode;
        }

        public void Dispose()
        {
            if (!Process.HasExited) Process.Kill();
            Process.Dispose();
        }
    }
}
