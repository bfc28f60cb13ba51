using System.Diagnostics;
using System.Globalization;
using Ddpm.Runtime;
using Xunit.Abstractions;

namespace Ddpm.Tests.Reliability;

/// <summary>A copy of the kill target's folder with the NuGet package's (unpatched) TorchSharp.dll.</summary>
public sealed class StockKillTarget : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("stock-torchsharp");

    public StockKillTarget() => Dll = StockTorchSharp.CopyWithStock(ChildProcess.KillTargetDll, _dir);

    public string Dll { get; }

    public void Dispose() => Directory.Delete(_dir, recursive: true);
}

/// <summary>
/// The TorchSharp race (docs/thread-safety.md) through tests/Ddpm.KillTarget --race, in child processes: every public
/// entry point of the library, and a user's own tensor arithmetic, on three threads at once beside a thread forcing
/// collections, each result compared bit for bit with the same call's result alone. On the build's patched
/// TorchSharp.dll every result matches; on the NuGet package's the same child fails. About 45 s on the 2-core
/// development machine (20 s of racing and 10 s of the control's protected twin); DDPM_LONG_TESTS=1 races 120 s.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Process)]
public sealed class TorchSharpRaceTests(StockKillTarget stock, ITestOutputHelper output)
    : IClassFixture<StockKillTarget>
{
    private const string AllowUnpatched = TorchSharpPatch.AllowUnpatchedVariable;

    private sealed record Outcome(int ExitCode, Dictionary<string, (long Runs, long Wrong)> Operations, long Collections, string Output);

    private Outcome Race(string dll, double seconds, int threads, string? only, bool allowUnpatched, int minRuns = 0)
    {
        var args = new List<string> { "--race", seconds.ToString(CultureInfo.InvariantCulture), threads.ToString(CultureInfo.InvariantCulture) };
        if (only is not null) args.Add(only);
        if (minRuns > 0) args.AddRange(["--min-runs", minRuns.ToString(CultureInfo.InvariantCulture)]);
        var environment = new Dictionary<string, string?> { [AllowUnpatched] = allowUnpatched ? "1" : null };
        var clock = Stopwatch.StartNew();
        using var child = ChildProcess.Start(dll, environment, args.ToArray());
        // The fixture and the results alone come first (≈ 15 s on a loaded 2-core machine); the last calls end late.
        int code = child.WaitForExit(TimeSpan.FromSeconds(seconds + 240));
        var text = child.Stdout + child.Stderr;
        var operations = new Dictionary<string, (long, long)>();
        long collections = -1;
        foreach (var line in child.Stdout.Split('\n', StringSplitOptions.TrimEntries))
        {
            var f = line.Split(' ');
            if (f is ["op", var name, var runs, var wrong]) operations[name] = (long.Parse(runs, CultureInfo.InvariantCulture), long.Parse(wrong, CultureInfo.InvariantCulture));
            if (f is ["total", _, _, var gcs, _]) collections = long.Parse(gcs, CultureInfo.InvariantCulture);
        }
        output.WriteLine($"{Path.GetDirectoryName(dll)} --race {seconds} {threads} {only}: exit {code} after {clock.Elapsed.TotalSeconds:F0} s");
        output.WriteLine(text.Length > 4000 ? text[..4000] + " …" : text);
        return new Outcome(code, operations, collections, text);
    }

    [Fact]
    public void Every_entry_point_on_three_threads_beside_forced_collections_gives_its_result_alone()
    {
        double seconds = ChildProcess.LongTests ? 120 : 20;
        var run = Race(ChildProcess.KillTargetDll, seconds, threads: 3, only: null, allowUnpatched: false, minRuns: 2);
        Assert.True(run.ExitCode == 0, $"the race failed on the patched TorchSharp.dll (exit {run.ExitCode}):\n{run.Output}");
        string[] all = ["generate", "train", "save-load", "export-import", "bound", "classifier", "evaluate", "dataset", "arithmetic"];
        Assert.Equal(all.Order(), run.Operations.Keys.Order());
        foreach (var (name, (runs, wrong)) in run.Operations)
        {
            Assert.True(runs >= 2, $"{name} ran {runs} time(s) during the race");
            Assert.Equal(0, wrong);
        }
        // The collector really collected: hundreds per second on the development machine.
        Assert.True(run.Collections >= 20 * seconds, $"only {run.Collections} collections in {seconds} s");
    }

    /// <summary>
    /// The control: one thread of tensor arithmetic beside the collector (the configuration that reproduces the race
    /// fastest: 1-2 s) on the package's TorchSharp.dll must fail within 30 s, and the same on the patched one must not
    /// in 10 s. Should the control pass, TorchSharp fixed the race (then build/TorchSharpKeepAlive can go) or the race
    /// lost its power.
    /// </summary>
    [Fact]
    public void The_race_that_the_patched_TorchSharp_dll_survives_breaks_the_NuGet_packages_copy()
    {
        // At least 10 calls however slowly the collector lets the worker go (one CI-like run managed 2 in 10 s).
        var protectedRun = Race(ChildProcess.KillTargetDll, 10, threads: 1, only: "arithmetic", allowUnpatched: false, minRuns: 10);
        Assert.True(protectedRun.ExitCode == 0, $"the patched TorchSharp.dll failed the arithmetic race:\n{protectedRun.Output}");
        Assert.True(protectedRun.Operations["arithmetic"].Runs >= 10, "too few calls to mean anything");

        var control = Race(stock.Dll, 30, threads: 1, only: "arithmetic", allowUnpatched: true);
        Assert.True(control.ExitCode != 0,
            "the NuGet package's TorchSharp.dll ran 30 s of the race without a crash, an error or a wrong result: TorchSharp " +
            $"may have fixed the race (then the patch, build/TorchSharpKeepAlive, can go), or the race lost its power.\n{control.Output}");
        // A crash of libtorch (SIGABRT 134, SIGSEGV 139), one of its errors (4) or a wrong number (3): nothing else.
        Assert.Contains(control.ExitCode, new[] { 3, 4, 128 + 6, 128 + 11 });
    }

    [Fact]
    public void Ddpm_refuses_an_unpatched_TorchSharp_dll_with_one_line_naming_it()
    {
        var dir = TestPaths.TempDir("refused");
        try
        {
            using var child = ChildProcess.Start(stock.Dll, new Dictionary<string, string?> { [AllowUnpatched] = null }, dir, "2");
            int code = child.WaitForExit(TimeSpan.FromSeconds(120));
            Assert.NotEqual(0, code);
            var expected = $"TorchSharp.dll at {Path.Combine(Path.GetDirectoryName(stock.Dll)!, "TorchSharp.dll")} is not patched " +
                "(no Ddpm.HandleKeepAlive marker): without the patch";
            Assert.Contains(expected, child.Stderr);
            Assert.Empty(Directory.GetFiles(dir)); // refused before the first checkpoint
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }
}
