using System.Diagnostics;
using System.Globalization;
using System.Runtime.CompilerServices;
using Ddpm.Runtime;

/// <summary>
/// Checks of <see cref="FinalizerHold"/> that need a process of their own; each prints "key value" lines for
/// FinalizerHoldTests to assert on.
/// </summary>
internal static class HoldScenarios
{
    public static void Run(string scenario)
    {
        switch (scenario)
        {
            case "finalizers": Finalizers(); break;
            case "nesting": Nesting(); break;
            case "waiting": Waiting(outside: false); break;
            case "waiting-outside": Waiting(outside: true); break;
            case "finalizer-wait": FinalizerWait(); break;
            default: throw new ArgumentException($"unknown scenario '{scenario}'");
        }
    }

    private static void Print(string key, object value) =>
        Console.WriteLine(FormattableString.Invariant($"{key} {value}"));

    private static string Seconds(TimeSpan t) => t.TotalSeconds.ToString("F2", CultureInfo.InvariantCulture);

    /// <summary>No finalizer runs inside a region; after the last region ends, one does.</summary>
    private static void Finalizers()
    {
        var finalized = new ManualResetEventSlim();
        using (FinalizerHold.Enter())
        {
            Print("holding-inside", FinalizerHold.Holding);
            Drop(finalized);
            GC.Collect();
            Print("finalized-inside", finalized.Wait(TimeSpan.FromSeconds(1)));
        }
        Print("holding-after", FinalizerHold.Holding);
        GC.Collect();
        Print("finalized-after", finalized.Wait(TimeSpan.FromSeconds(10)));
    }

    /// <summary>Regions nest; a boundary renews a hold older than DrainAfter; the last region out lets go.</summary>
    private static void Nesting()
    {
        FinalizerHold.Boundary(); // outside a region: nothing
        Print("holding-before", FinalizerHold.Holding);
        using (FinalizerHold.Enter())
        {
            using (FinalizerHold.Enter())
            {
                long before = FinalizerHold.HoldsStarted;
                FinalizerHold.Boundary(); // young hold: nothing
                Print("renewed-young", FinalizerHold.HoldsStarted - before);
                Thread.Sleep(FinalizerHold.DrainAfter + TimeSpan.FromMilliseconds(200));
                FinalizerHold.Boundary();
                Print("renewed-old", FinalizerHold.HoldsStarted - before);
                Print("holding-inner", FinalizerHold.Holding);
            }
            Print("holding-outer", FinalizerHold.Holding);
        }
        Print("holding-after", FinalizerHold.Holding);
        try
        {
            new FinalizerHold.Region().Dispose();
            Print("stray-end", "accepted");
        }
        catch (InvalidOperationException) { Print("stray-end", "refused"); }
    }

    /// <summary>
    /// Thread A, inside a region, waits for thread B (with <paramref name="outside"/>: inside FinalizerHold.Outside()); B,
    /// inside too, reaches a boundary with an old hold, then lets A go. Prints how long B's boundary took and whether it
    /// renewed the hold.
    /// </summary>
    private static void Waiting(bool outside)
    {
        var aInside = new ManualResetEventSlim();
        var go = new ManualResetEventSlim();
        var a = new Thread(() =>
        {
            using (FinalizerHold.Enter())
            {
                if (outside)
                {
                    using (FinalizerHold.Outside())
                    {
                        aInside.Set();
                        go.Wait();
                    }
                }
                else
                {
                    aInside.Set();
                    go.Wait();
                }
            }
        });
        a.Start();
        aInside.Wait();
        TimeSpan boundary;
        long renewed;
        using (FinalizerHold.Enter())
        {
            Thread.Sleep(FinalizerHold.DrainAfter + TimeSpan.FromMilliseconds(200));
            long before = FinalizerHold.HoldsStarted;
            var clock = Stopwatch.StartNew();
            FinalizerHold.Boundary();
            boundary = clock.Elapsed;
            renewed = FinalizerHold.HoldsStarted - before;
            go.Set();
        }
        Print("joined", a.Join(TimeSpan.FromSeconds(30)));
        Print("boundary-seconds", Seconds(boundary));
        Print("renewed", renewed);
    }

    /// <summary>Inside a region, waits for pending finalizers (as TorchSharp does after a failed tensor factory).</summary>
    private static void FinalizerWait()
    {
        using (FinalizerHold.Enter())
        {
            var clock = Stopwatch.StartNew();
            GC.Collect();
            GC.WaitForPendingFinalizers();
            Print("seconds", Seconds(clock.Elapsed));
        }
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private static void Drop(ManualResetEventSlim finalized) => _ = new Finalizable(finalized);

    private sealed class Finalizable(ManualResetEventSlim finalized)
    {
        ~Finalizable() => finalized.Set();
    }
}
