using System.Diagnostics;

namespace Ddpm.Runtime;

/// <summary>
/// What the library's loops do between steps for memory. TorchSharp frees the native Scalar behind every number (and
/// any tensor left undisposed; sampling leaves some) only in a finalizer, and the garbage collector sees
/// neither that native memory nor any reason to hurry while the managed heap is small. Where the CPU reports a large
/// cache the young generation's budget is large too (the development VM reports a 300 MiB L3 and collected for the
/// first time after ~80 MB of allocation, 1,300 steps of the tiny test U-Net). And the keep-alive patch's ring would
/// carry a step's undisposed tensors through a collection into an older generation, native memory and all. So each
/// step boundary releases this thread's ring (no native call of this thread is in flight there) and, at most once per
/// <see cref="Interval"/> in the process, collects generations 0 and 1. Memory only: safety does not depend on these
/// calls (docs/thread-safety.md).
/// </summary>
public static class NativeGarbage
{
    /// <summary>The least time between two collections made here.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(0.5);

    private static long _last = Stopwatch.GetTimestamp();

    /// <summary>Called between steps (a sampling step, a training step, a batch), on the loop's thread: releases what
    /// its ring keeps, and collects generations 0 and 1 when the last collection made here is older than
    /// <see cref="Interval"/>; cheap otherwise.</summary>
    public static void CollectIfDue()
    {
        TorchSharpPatch.ReleaseThisThreadsKept();
        long now = Stopwatch.GetTimestamp(), last = Interlocked.Read(ref _last);
        if (Stopwatch.GetElapsedTime(last, now) < Interval) return;
        if (Interlocked.CompareExchange(ref _last, now, last) != last) return; // another thread collects
        GC.Collect(1, GCCollectionMode.Forced, blocking: true);
    }
}
