using System.Diagnostics;
using System.Text;

namespace Ddpm.Tests.Interop;

/// <summary>
/// A Python interpreter with PyTorch for the cross-framework tests: <c>$DDPM_PYTHON</c> when set, else the first of
/// <c>/usr/bin/python3</c> (where Debian's <c>python3-torch</c> installs) and <c>python3</c> on PATH that imports
/// torch.
/// </summary>
internal static class RealPyTorch
{
    private static readonly TimeSpan ProbeTimeout = TimeSpan.FromMinutes(2);
    private static readonly Lazy<(string? Python, string Problem)> Probe = new(FindPython);

    /// <summary>The interpreter, or null when none imports torch.</summary>
    public static string? Python => Probe.Value.Python;

    /// <summary>Why the tests cannot run here (empty when they can).</summary>
    public static string Problem => Probe.Value.Problem;

    /// <summary><c>DDPM_REQUIRE_PYTORCH=1</c> (set by .ci/run): a missing PyTorch fails the tests instead of skipping
    /// them.</summary>
    public static bool Required => Environment.GetEnvironmentVariable("DDPM_REQUIRE_PYTORCH") == "1";

    /// <summary>
    /// Writes <paramref name="script"/> to <paramref name="dir"/> and runs it with <paramref name="args"/>; the
    /// repository's <c>tests/fixtures</c> is on the script's <c>sys.path</c>. Returns stdout; a non-zero exit fails the
    /// test with stderr.
    /// </summary>
    public static string Run(string dir, string script, params string[] args)
    {
        if (Python is null) throw new InvalidOperationException($"PyTorch is required (DDPM_REQUIRE_PYTORCH=1) but {Problem}");
        var path = Path.Combine(dir, "script.py");
        File.WriteAllText(path, $"import sys\nsys.path.insert(0, {PyString(Path.Combine(TestPaths.RepoRoot, "tests", "fixtures"))})\n{script}");
        var (code, stdout, stderr) = Start(Python, TimeSpan.FromMinutes(3), [path, .. args]);
        if (code != 0) throw new Xunit.Sdk.XunitException($"{Python} {path} exited with {code}:\n{stderr}");
        return stdout;
    }

    /// <summary>A Python string literal.</summary>
    public static string PyString(string s) => "'" + s.Replace("\\", "\\\\").Replace("'", "\\'") + "'";

    private static (string?, string) FindPython()
    {
        if (TestCategory.FastRun) return (null, "not probed in the fast subset (it starts no processes)");
        var fromEnv = Environment.GetEnvironmentVariable("DDPM_PYTHON");
        string[] candidates = string.IsNullOrEmpty(fromEnv) ? ["/usr/bin/python3", "python3"] : [fromEnv];
        var problems = new List<string>();
        foreach (var python in candidates)
        {
            try
            {
                var (code, _, stderr) = Start(python, ProbeTimeout, ["-c", "import torch"]);
                if (code == 0) return (python, "");
                var lines = stderr.Trim().Split('\n');
                problems.Add($"'{python} -c \"import torch\"' failed: {lines[^1].Trim()}");
            }
            catch (System.ComponentModel.Win32Exception)
            {
                problems.Add($"'{python}' cannot be started (not found)");
            }
            catch (TimeoutException e)
            {
                problems.Add(e.Message);
            }
        }
        return (null, "PyTorch not found (" + string.Join("; ", problems) + "); install it with " +
            "'apt-get install --no-install-recommends python3-torch' or point DDPM_PYTHON at a Python that has it");
    }

    private static (int Code, string Stdout, string Stderr) Start(string file, TimeSpan timeout, string[] args)
    {
        var info = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Reliability.ChildProcess.Launch(info);
        var stdout = new StringBuilder();
        var stderr = new StringBuilder();
        process.OutputDataReceived += (_, e) => { if (e.Data is not null) lock (stdout) stdout.AppendLine(e.Data); };
        process.ErrorDataReceived += (_, e) => { if (e.Data is not null) lock (stderr) stderr.AppendLine(e.Data); };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        if (!process.WaitForExit(timeout))
        {
            process.Kill(entireProcessTree: true);
            throw new TimeoutException($"{file} {string.Join(' ', args)} did not finish within {timeout.TotalSeconds:F0} s");
        }
        process.WaitForExit(); // drains the output handlers
        return (process.ExitCode, stdout.ToString(), stderr.ToString());
    }
}

/// <summary>
/// A fact that needs a real PyTorch (<see cref="RealPyTorch"/>): skipped, with the reason, where there is none, unless
/// <c>DDPM_REQUIRE_PYTORCH=1</c>, where it runs and fails.
/// </summary>
[AttributeUsage(AttributeTargets.Method)]
public sealed class PyTorchFactAttribute : FactAttribute
{
    public PyTorchFactAttribute()
    {
        if (RealPyTorch.Python is null && (!RealPyTorch.Required || TestCategory.FastRun)) Skip = RealPyTorch.Problem;
    }
}
