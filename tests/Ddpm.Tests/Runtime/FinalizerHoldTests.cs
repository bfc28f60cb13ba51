using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Ddpm.Runtime;
using Ddpm.Tests.Reliability;

namespace Ddpm.Tests.Runtime;

public sealed class FinalizerHoldTests
{
    /// <summary>Runs the kill target with <paramref name="args"/>, the hold on or off; returns its exit code, stdout and stderr.</summary>
    private static (int Exit, string Out, string Err) Child(TimeSpan limit, bool hold, params string[] args)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.Environment[FinalizerHold.Variable] = hold ? "1" : "0";
        info.ArgumentList.Add(ChildProcess.KillTargetDll);
        foreach (var a in args) info.ArgumentList.Add(a);
        using var process = Process.Start(info)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        if (!process.WaitForExit(limit))
        {
            process.Kill(entireProcessTree: true);
            Assert.Fail($"kill target {string.Join(' ', args)} did not finish in {limit.TotalSeconds} s");
        }
        return (process.ExitCode, stdout.Result, stderr.Result);
    }

    [Fact]
    public void Without_the_hold_libtorch_soon_reads_a_freed_scalar_and_with_it_never()
    {
        // The control, the hold turned off: one thread adding tensors while another allocates aborts the process (measured
        // idle: within 0.6–2.6 s of starting). Should this ever pass 60 s, TorchSharp keeps its Scalars alive and the hold can go.
        var (exit, _, err) = Child(TimeSpan.FromSeconds(120), hold: false, "--scalar-race", "60");
        Assert.True(exit != 0, "60 s of tensor arithmetic beside an allocating thread ran clean without the hold");
        Assert.Contains("Scalar.h", err);

        // The same for 6 s inside the hold: every result right, and drains (new holds) every DrainAfter along the way.
        var (holdExit, output, holdErr) = Child(TimeSpan.FromSeconds(120), hold: true, "--scalar-race", "6");
        Assert.True(holdExit == 0, $"exit {holdExit}: {holdErr}");
        var f = output.Trim().Split(' ').Select(long.Parse).ToArray();
        var (results, wrong, garbageRounds, holds) = (f[0], f[1], f[2], f[3]);
        Assert.Equal(0, wrong);
        Assert.True(results > 100, $"only {results} results in 6 s");
        Assert.True(garbageRounds > 100, $"only {garbageRounds} × 2 MB of garbage in 6 s");
        Assert.True(holds >= 2, $"{holds} holds in 6 s: the hold was never drained (DrainAfter {FinalizerHold.DrainAfter.TotalSeconds} s)");
    }

    [Fact]
    public void Waiting_for_finalizers_inside_a_region_ends_after_the_give_up_time_instead_of_never()
    {
        var (exit, output, err) = Child(TimeSpan.FromSeconds(120), hold: true, "--finalizer-wait");
        Assert.True(exit == 0, $"exit {exit}: {err}");
        double seconds = double.Parse(output.Trim(), CultureInfo.InvariantCulture);
        double giveUp = FinalizerHold.GiveUpAfter.TotalSeconds;
        Assert.InRange(seconds, giveUp - 0.5, giveUp + 10);
    }

    [Fact]
    public void Inside_a_region_no_finalizer_runs_and_after_it_they_do()
    {
        var finalized = new ManualResetEventSlim();
        using (FinalizerHold.Enter())
        {
            Assert.True(FinalizerHold.Holding);
            Drop(finalized);
            GC.Collect();
            Assert.False(finalized.Wait(TimeSpan.FromMilliseconds(500)), "a finalizer ran inside the region");
        }
        // Tests beside this one may hold the finalizer thread in their own regions; they let it go within a drain.
        GC.Collect();
        Assert.True(finalized.Wait(TimeSpan.FromSeconds(60)), "the finalizer did not run after the region ended");
    }

    [Fact]
    public void Regions_nest_and_a_boundary_renews_an_old_hold()
    {
        FinalizerHold.Boundary(); // outside a region: nothing to do
        using (FinalizerHold.Enter())
        {
            using (FinalizerHold.Enter())
            {
                Assert.True(FinalizerHold.Holding);
                long before = FinalizerHold.HoldsStarted;
                Thread.Sleep(FinalizerHold.DrainAfter + TimeSpan.FromMilliseconds(200));
                FinalizerHold.Boundary(); // the hold is older than DrainAfter: drained and started again
                Assert.True(FinalizerHold.HoldsStarted > before);
                Assert.True(FinalizerHold.Holding);
            }
            Assert.True(FinalizerHold.Holding); // the outer region still holds
        }
        Assert.Throws<InvalidOperationException>(() => new FinalizerHold.Region().Dispose());
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Drop(ManualResetEventSlim finalized) => _ = new Finalizable(finalized);

    private sealed class Finalizable(ManualResetEventSlim finalized)
    {
        ~Finalizable() => finalized.Set();
    }
}
