using System.Diagnostics;
using System.Runtime.CompilerServices;

namespace Ddpm.Runtime;

/// <summary>
/// Keeps .NET's finalizer thread waiting while any thread is inside the library's TorchSharp loops, so that no
/// TorchSharp <c>Scalar</c> is freed while libtorch still reads it.
/// </summary>
/// <remarks>
/// <para>Why: TorchSharp 0.107 turns numbers into native Scalars that only a finalizer frees (they join no dispose scope),
/// and hands a Scalar's handle to libtorch without keeping its wrapper alive: <c>a + b</c> is <c>a.add(b, 1)</c>, and the
/// wrapper of that 1 is garbage as soon as its handle is read. When another thread's allocation starts a collection
/// during the native call and the finalizer runs before libtorch reads the number, libtorch reads freed memory: its
/// "Expected false to be true … toFloat" or "Unknown scalar type", or silently a wrong number. <c>Ddpm.KillTarget
/// --scalar-race</c> with the hold off shows it within seconds (one thread adding tensors, one allocating). A
/// single-threaded program is safe (its collections start at its own allocations, between native calls); a web server,
/// or a test host running tests side by side, is not. Collections cannot be prevented; finalizers can be held back, and
/// that is what this does.</para>
/// <para>How: the first thread to <see cref="Enter"/> drops a sentinel object and collects; the sentinel's finalizer then
/// waits on the finalizer thread (no other finalizer runs meanwhile) until the last thread inside leaves. So that
/// finalizable garbage does not pile up while threads come and go, a <see cref="Boundary"/> (a point between native calls,
/// e.g. after each sampling step) that finds the hold older than <see cref="DrainAfter"/> waits until every thread inside
/// is at a boundary too, lets the finalizer thread run its queue empty, and holds it again. Regions nest (only a
/// thread's outermost counts) and must begin and end on the same thread. A thread inside that waits for another (ranks
/// that are threads meeting at a collective) steps <see cref="Outside"/> while it waits; every wait here is bounded
/// (<see cref="DrainWait"/>).</para>
/// <para>Should no thread inside make progress (enter, reach a boundary or leave) for <see cref="GiveUpAfter"/>, the hold
/// lets go rather than deadlock: TorchSharp waits for pending finalizers when a tensor factory fails, and a region may
/// wrap code that does the same.</para>
/// <para>Measured: the server load test (20 clients, 30 s) without the hold had "generation failed: Unknown scalar type."
/// in 3 of 4 runs, with it in none of 16; its RSS grows 22–25 MB from 10–15 s to the last 5 s with the hold (draining
/// every 0.5 s; every 2 s: 30–33 MB; every 5 s: 35–43 MB), 17–22 MB without.</para>
/// </remarks>
public static class FinalizerHold
{
    /// <summary>How old a hold may grow before a <see cref="Boundary"/> lets the queued finalizers run.</summary>
    public static readonly TimeSpan DrainAfter = TimeSpan.FromSeconds(0.5);

    /// <summary>How long the hold waits without progress inside before it lets go.</summary>
    public static readonly TimeSpan GiveUpAfter = TimeSpan.FromSeconds(15);

    /// <summary>
    /// How long a thread that would drain (or start) the hold waits for the threads inside to reach a boundary. If they
    /// do not (one waits for another thread, say), it goes on without, and no thread waits so again for
    /// <see cref="RetryAfter"/>: a stall, never a deadlock.
    /// </summary>
    public static readonly TimeSpan DrainWait = TimeSpan.FromSeconds(2);

    private static readonly TimeSpan RetryAfter = TimeSpan.FromSeconds(5);
    private static long _noWaitBefore;

    /// <summary>How long <see cref="Enter"/> waits for the sentinel's finalizer to start before going on without a hold.</summary>
    private static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(10);

    // Threads inside hold the read lock (one per thread, taken by its outermost region); the hold is started, drained and
    // released only under the write lock, so never while any thread is between two boundaries.
    private static readonly ReaderWriterLockSlim Inside = new(LockRecursionPolicy.NoRecursion);
    private static Hold? _hold;
    private static long _progress;
    [ThreadStatic] private static int _depth;
    [ThreadStatic] private static bool _outside;

    /// <summary>Whether the finalizer thread is held right now.</summary>
    public static bool Holding => _hold?.Holding ?? false;

    /// <summary>How many holds have started in this process (each one a collection and a wait for the finalizer thread).</summary>
    public static long HoldsStarted => Interlocked.Read(ref _holdsStarted);
    private static long _holdsStarted;

    /// <summary><c>DDPM_FINALIZER_HOLD=0</c> turns the hold off (regions still nest, nothing is held): for comparison, or
    /// should it ever get in the way.</summary>
    public const string Variable = "DDPM_FINALIZER_HOLD";

    /// <summary>Whether regions hold the finalizer thread in this process (not when <see cref="Variable"/> is 0).</summary>
    public static bool Enabled { get; } = Environment.GetEnvironmentVariable(Variable) != "0";

    /// <summary>Begins a region of TorchSharp work on this thread; dispose the result on the same thread to end it.</summary>
    public static Region Enter()
    {
        if (_depth == 0 && Enabled)
        {
            Interlocked.Increment(ref _progress);
            EnterHeld();
        }
        _depth++;
        return new Region();
    }

    /// <summary>
    /// Marks a point between native calls inside a region (after a sampling step, a training step, a batch). When the hold
    /// is due for a drain, waits here (at most <see cref="DrainWait"/>) until every thread inside is at such a point, lets
    /// the finalizer thread run its queue empty, and holds it again. Outside a region it does nothing.
    /// </summary>
    public static void Boundary()
    {
        if (_depth == 0 || _outside || !Enabled) return;
        Interlocked.Increment(ref _progress);
        if (_hold is { Holding: true } current && current.Age < DrainAfter) return;
        if (Backingoff) return;
        Inside.ExitReadLock();
        if (Inside.TryEnterWriteLock(DrainWait))
        {
            try
            {
                if (_hold is { } hold && (!hold.Holding || hold.Age >= DrainAfter))
                {
                    hold.Release();
                    _hold = null;
                }
            }
            finally { Inside.ExitWriteLock(); }
        }
        else BackOff();
        EnterHeld();
    }

    /// <summary>
    /// Steps this thread out of its region while it waits for other threads (ranks that are threads of one process meeting
    /// at a collective): until the result is disposed it makes no TorchSharp call, and a drain does not wait for it. Without
    /// this, a thread inside that waits for another blocks that one's next drain for <see cref="DrainWait"/>. Outside a
    /// region it does nothing.
    /// </summary>
    public static Pause Outside()
    {
        if (_depth == 0 || _outside || !Enabled) return default;
        Interlocked.Increment(ref _progress);
        _outside = true;
        Inside.ExitReadLock();
        return new Pause(true);
    }

    /// <summary>Takes this thread's read lock with the finalizer thread held (started here when it is not).</summary>
    private static void EnterHeld()
    {
        while (true)
        {
            Inside.EnterReadLock();
            if (_hold is { Holding: true } || Backingoff) return;
            Inside.ExitReadLock();
            if (!Inside.TryEnterWriteLock(DrainWait))
            {
                BackOff(); // a thread inside is waiting for something else: go on without the hold for now
                continue;
            }
            try
            {
                if (_hold is not { Holding: true })
                {
                    _hold?.Release();
                    _hold = Hold.Start();
                    if (!_hold.Holding) BackOff(); // the finalizer thread did not come within StartTimeout
                }
            }
            finally { Inside.ExitWriteLock(); }
        }
    }

    /// <summary>Whether a wait for the threads inside timed out less than <see cref="RetryAfter"/> ago (no drain or start until then).</summary>
    private static bool Backingoff => Stopwatch.GetTimestamp() < Interlocked.Read(ref _noWaitBefore);

    private static void BackOff() =>
        Interlocked.Exchange(ref _noWaitBefore, Stopwatch.GetTimestamp() + (long)(RetryAfter.TotalSeconds * Stopwatch.Frequency));

    private static void Leave()
    {
        Interlocked.Increment(ref _progress);
        Inside.ExitReadLock();
        // The last thread out lets the finalizer thread go; if another is still inside (or about to drain), it will.
        if (!Inside.TryEnterWriteLock(0)) return;
        try
        {
            _hold?.Release();
            _hold = null;
        }
        finally { Inside.ExitWriteLock(); }
    }

    /// <summary>A region of <see cref="Enter"/>; disposing it on the thread that entered ends it.</summary>
    public readonly struct Region : IDisposable
    {
        public void Dispose()
        {
            if (_depth == 0) throw new InvalidOperationException("FinalizerHold: a region ended on a thread that is not inside one");
            if (_depth == 1 && _outside) throw new InvalidOperationException("FinalizerHold: a region ended inside Outside()");
            if (--_depth == 0 && Enabled) Leave();
        }
    }

    /// <summary>A step out of the region of <see cref="Outside"/>; disposing it on the same thread steps back in.</summary>
    public readonly struct Pause : IDisposable
    {
        private readonly bool _active;
        internal Pause(bool active) => _active = active;

        public void Dispose()
        {
            if (!_active) return;
            _outside = false;
            Interlocked.Increment(ref _progress);
            EnterHeld();
        }
    }

    /// <summary>One hold of the finalizer thread: from its sentinel's finalizer starting until <see cref="Release"/>.</summary>
    private sealed class Hold
    {
        private readonly ManualResetEventSlim _started = new(), _released = new();
        private long _startedAt;

        public bool Holding => _started.IsSet && !_released.IsSet;
        public TimeSpan Age => _started.IsSet ? Stopwatch.GetElapsedTime(Interlocked.Read(ref _startedAt)) : TimeSpan.Zero;

        public static Hold Start()
        {
            // The finalizer thread runs the newest of its queue first: a sentinel queued behind a backlog would run
            // before it, and the backlog would wait for the next drain, where the next sentinel overtakes it again (the
            // load test's RSS grew by 270 MB in 100 s so). So the queue is run empty first; no thread is inside now.
            GC.WaitForPendingFinalizers();
            var hold = new Hold();
            DropSentinel(hold);
            var clock = Stopwatch.StartNew();
            // The sentinel is young; a collection of generation 0 finds it, unless one that ran meanwhile promoted it.
            for (int generation = 0; ; generation = Math.Min(generation + 1, GC.MaxGeneration))
            {
                GC.Collect(generation, GCCollectionMode.Forced, blocking: true);
                if (hold._started.Wait(TimeSpan.FromMilliseconds(100))) break;
                if (clock.Elapsed > StartTimeout)
                {
                    hold._released.Set(); // when the sentinel's finalizer does run, it returns at once
                    return hold;
                }
            }
            Interlocked.Increment(ref _holdsStarted);
            return hold;
        }

        public void Release() => _released.Set();

        [MethodImpl(MethodImplOptions.NoInlining)]
        private static void DropSentinel(Hold hold) => _ = new Sentinel(hold);

        /// <summary>Runs on the finalizer thread: waits until released, or until no thread inside has made progress for <see cref="GiveUpAfter"/>.</summary>
        public void Wait()
        {
            Interlocked.Exchange(ref _startedAt, Stopwatch.GetTimestamp());
            _started.Set();
            long seen = Interlocked.Read(ref _progress);
            var still = Stopwatch.StartNew();
            while (!_released.Wait(TimeSpan.FromMilliseconds(250)))
            {
                long now = Interlocked.Read(ref _progress);
                if (now != seen)
                {
                    seen = now;
                    still.Restart();
                }
                else if (still.Elapsed > GiveUpAfter)
                {
                    _released.Set(); // the next boundary or entry holds again
                    return;
                }
            }
        }
    }

    private sealed class Sentinel(Hold hold)
    {
        ~Sentinel() => hold.Wait();
    }
}
