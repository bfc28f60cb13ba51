namespace Ddpm.Server;

/// <summary>
/// Keeps garbage collections away from the moments the server's threads are inside TorchSharp calls.
/// </summary>
/// <remarks>
/// Why: TorchSharp 0.107 turns numbers into native <c>Scalar</c>s that only a finalizer frees, and passes their handle
/// to libtorch without keeping the wrapper alive (e.g. the implicit <c>alpha = 1</c> of every tensor <c>+</c>). When
/// another thread's allocation starts a collection during such a call, the finalizer can free the Scalar before
/// libtorch reads it: a use-after-free, seen here as libtorch's "Expected false to be true … toFloat" in guided
/// sampling while other threads allocated (or, worse, as silently wrong values). A single-threaded CLI only collects
/// at its own allocations, between calls; a web server's other threads collect at any time. So every TorchSharp call
/// of the server runs inside <see cref="Enter"/>, and at step boundaries (<see cref="Boundary"/>), when no such call is
/// in flight on any thread, a generation-0 collection is made once <see cref="CollectEvery"/> bytes were allocated:
/// the collector's own budget is then rarely used up by others in the middle of a step.
/// </remarks>
internal static class TorchCallGuard
{
    /// <summary>Bytes allocated (all threads) after which a step boundary collects generation 0.</summary>
    public const long CollectEvery = 1 << 20;
    private static readonly ReaderWriterLockSlim Calls = new(LockRecursionPolicy.NoRecursion);
    private static long _lastCollect;

    /// <summary>Marks the calling thread as inside TorchSharp calls until the returned scope is disposed.</summary>
    public static Scope Enter()
    {
        Collect();
        Calls.EnterReadLock();
        return new Scope();
    }

    /// <summary>A step boundary of a thread inside <see cref="Enter"/>: collects now if it is time to.</summary>
    public static void Boundary()
    {
        if (!Due()) return;
        Calls.ExitReadLock();
        try { Collect(); }
        finally { Calls.EnterReadLock(); }
    }

    private static bool Due() => GC.GetTotalAllocatedBytes() - Interlocked.Read(ref _lastCollect) > CollectEvery;

    private static void Collect()
    {
        if (!Due()) return;
        Calls.EnterWriteLock(); // waits until no thread is inside TorchSharp calls
        try
        {
            if (!Due()) return;
            GC.Collect(0, GCCollectionMode.Forced, blocking: true);
            Interlocked.Exchange(ref _lastCollect, GC.GetTotalAllocatedBytes());
        }
        finally { Calls.ExitWriteLock(); }
    }

    public readonly struct Scope : IDisposable
    {
        public void Dispose() => Calls.ExitReadLock();
    }
}
