using System.Globalization;
using Ddpm.Runtime;
using Ddpm.Tests.Reliability;

namespace Ddpm.Tests.Runtime;

[Trait(TestCategory.Name, TestCategory.Process)]
public sealed class FinalizerHoldTests
{
    /// <summary>Runs the kill target with <paramref name="args"/>, the hold on or off; returns its exit code, stdout and stderr.</summary>
    private static (int Exit, string Out, string Err) Child(TimeSpan limit, bool hold, params string[] args)
    {
        var environment = new Dictionary<string, string?> { [FinalizerHold.Variable] = hold ? "1" : "0" };
        using var child = ChildProcess.Start(ChildProcess.KillTargetDll, environment, args);
        int exit = child.WaitForExit(limit);
        return (exit, child.Stdout, child.Stderr);
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

    /// <summary>Runs a HoldScenarios check in a child (the hold is process-wide); returns its "key value" lines.</summary>
    private static Dictionary<string, string> Scenario(string name)
    {
        var (exit, output, err) = Child(TimeSpan.FromSeconds(120), hold: true, "--hold", name);
        Assert.True(exit == 0, $"exit {exit}: {err}");
        return output.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Trim().Split(' ', 2)).ToDictionary(kv => kv[0], kv => kv[1]);
    }

    [Fact]
    public void Inside_a_region_no_finalizer_runs_and_after_the_last_one_ends_they_do()
    {
        var r = Scenario("finalizers");
        Assert.Equal("True", r["holding-inside"]);
        Assert.Equal("False", r["finalized-inside"]); // waited 1 s after a full collection
        Assert.Equal("False", r["holding-after"]);
        Assert.Equal("True", r["finalized-after"]);
    }

    [Fact]
    public void Regions_nest_a_boundary_renews_only_an_old_hold_and_the_last_region_out_lets_go()
    {
        var r = Scenario("nesting");
        Assert.Equal("False", r["holding-before"]);
        Assert.Equal("0", r["renewed-young"]);
        Assert.Equal("1", r["renewed-old"]);
        Assert.Equal("True", r["holding-inner"]);
        Assert.Equal("True", r["holding-outer"]);
        Assert.Equal("False", r["holding-after"]);
        Assert.Equal("refused", r["stray-end"]);
    }

    [Fact]
    public void A_thread_waiting_for_another_stalls_its_drain_for_DrainWait_at_most_and_not_at_all_from_Outside()
    {
        double wait = FinalizerHold.DrainWait.TotalSeconds;
        var inside = Scenario("waiting");
        Assert.Equal("True", inside["joined"]); // no deadlock: the waiting thread was let go
        Assert.InRange(double.Parse(inside["boundary-seconds"], CultureInfo.InvariantCulture), wait - 0.1, wait + 3);
        Assert.Equal("0", inside["renewed"]); // the drain gave up; the hold stays

        var outside = Scenario("waiting-outside");
        Assert.Equal("True", outside["joined"]);
        Assert.InRange(double.Parse(outside["boundary-seconds"], CultureInfo.InvariantCulture), 0, wait - 0.5);
        Assert.Equal("1", outside["renewed"]);
    }

    [Fact]
    public void Waiting_for_finalizers_inside_a_region_ends_after_the_give_up_time_instead_of_never()
    {
        double seconds = double.Parse(Scenario("finalizer-wait")["seconds"], CultureInfo.InvariantCulture);
        double giveUp = FinalizerHold.GiveUpAfter.TotalSeconds;
        Assert.InRange(seconds, giveUp - 0.5, giveUp + 10);
    }
}
