using System.Diagnostics;
using Ddpm.Tests.Reliability;

namespace Ddpm.Tests.Distributed;

/// <summary>Starts the built CLI under Open MPI's <c>mpirun</c>, and finds its ranks' processes.</summary>
internal static class Mpirun
{
    /// <summary>Set by CI (<c>.ci/run</c>): mpirun must be there, so its tests fail instead of being skipped.</summary>
    public const string RequireVariable = "DDPM_REQUIRE_MPI";

    /// <summary>The mpirun on PATH, or null.</summary>
    public static string? Path { get; } = (Environment.GetEnvironmentVariable("PATH") ?? "")
        .Split(':', StringSplitOptions.RemoveEmptyEntries)
        .Select(d => System.IO.Path.Combine(d, "mpirun"))
        .FirstOrDefault(File.Exists);

    /// <summary><c>mpirun -n <paramref name="ranks"/> dotnet Ddpm.Cli.dll ARGS</c> (as root too, more ranks than cores
    /// allowed).</summary>
    public static ChildProcess.Running Start(int ranks, params string[] args) => Start(ranks, [], args);

    /// <summary>As <see cref="Start(int, string[])"/>, with <paramref name="environment"/> (NAME=VALUE) set in every
    /// rank (mpirun -x).</summary>
    public static ChildProcess.Running Start(int ranks, string[] environment, params string[] args)
    {
        var info = new ProcessStartInfo(Path ?? throw new InvalidOperationException("mpirun not found on PATH"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var a in new[] { "--allow-run-as-root", "--oversubscribe", "-n", ranks.ToString() }
                     .Concat(environment.SelectMany(e => new[] { "-x", e })).Concat(["dotnet", ChildProcess.CliDll]).Concat(args))
            info.ArgumentList.Add(a);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        return new ChildProcess.Running(ChildProcess.Launch(info));
    }

    /// <summary>
    /// One rank per app, each in its own working folder with its own arguments (<c>mpirun -n 1 -wdir A dotnet cli ARGS
    /// : -n 1 -wdir B …</c>), <paramref name="environment"/> set in every rank.
    /// </summary>
    public static ChildProcess.Running StartApps(string[] environment, params (string Folder, string[] Args)[] apps)
    {
        var info = new ProcessStartInfo(Path ?? throw new InvalidOperationException("mpirun not found on PATH"))
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        var args = new List<string> { "--allow-run-as-root", "--oversubscribe" };
        foreach (var (folder, appArgs) in apps)
        {
            if (args.Count > 2) args.Add(":");
            args.AddRange(["-n", "1", "-wdir", folder, .. environment.SelectMany(e => new[] { "-x", e }), "dotnet", ChildProcess.CliDll, .. appArgs]);
        }
        foreach (var a in args) info.ArgumentList.Add(a);
        info.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        return new ChildProcess.Running(ChildProcess.Launch(info));
    }

    /// <summary>Runs to the end (at most <paramref name="timeout"/>); fails the test with the output unless the exit
    /// code is 0.</summary>
    public static (string Stdout, string Stderr) Run(int ranks, TimeSpan timeout, params string[] args) => Run(ranks, [], timeout, args);

    /// <summary>As <see cref="Run(int, TimeSpan, string[])"/>, with <paramref name="environment"/> (NAME=VALUE) set in
    /// every rank.</summary>
    public static (string Stdout, string Stderr) Run(int ranks, string[] environment, TimeSpan timeout, params string[] args)
    {
        using var run = Start(ranks, environment, args);
        int code = run.WaitForExit(timeout);
        Assert.True(code == 0, $"mpirun -n {ranks} ddpm {string.Join(' ', args)} exited with {code}.\nstdout:\n{run.Stdout}\nstderr:\n{run.Stderr}");
        return (run.Stdout, run.Stderr);
    }

    /// <summary>The process id of rank <paramref name="rank"/> among <paramref name="launcher"/>'s children (from
    /// /proc).</summary>
    public static int? RankProcess(Process launcher, int rank)
    {
        foreach (var dir in Directory.EnumerateDirectories("/proc"))
        {
            if (!int.TryParse(System.IO.Path.GetFileName(dir), out int pid)) continue;
            try
            {
                var stat = File.ReadAllText(System.IO.Path.Combine(dir, "stat"));
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                if (int.Parse(fields[1]) != launcher.Id) continue; // fields: state, ppid, ...
                var environ = File.ReadAllText(System.IO.Path.Combine(dir, "environ")).Split('\0');
                if (environ.Contains($"OMPI_COMM_WORLD_RANK={rank}")) return pid;
            }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
        }
        return null;
    }
}

/// <summary>
/// A test that runs mpirun: skipped, with the reason, where Open MPI is not installed, unless <c>DDPM_REQUIRE_MPI=1</c>
/// (CI), where it then fails.
/// </summary>
public sealed class MpiFactAttribute : FactAttribute
{
    public MpiFactAttribute()
    {
        if (Mpirun.Path is null && Environment.GetEnvironmentVariable(Mpirun.RequireVariable) != "1")
            Skip = "mpirun not found: install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin) to run the multi-process tests; CI's .ci/run does";
    }
}
