using Ddpm.Distributed;
using static TorchSharp.torch;

namespace Ddpm.Tests.Distributed;

/// <summary>
/// Ranks as threads of the test process: <see cref="Run{T}"/> runs a body once per rank, each with an
/// <see cref="ICommunicator"/> whose collectives meet at a barrier. Sums are taken in rank order on every rank, so they
/// are bit-identical everywhere (as MPI's are). A rank that fails makes the others fail at their next collective
/// instead of waiting for it.
/// </summary>
internal static class ThreadRanks
{
    public static T[] Run<T>(int size, Func<ICommunicator, T> body)
    {
        var group = new Group(size);
        var results = new T[size];
        var errors = new Exception?[size];
        var threads = Enumerable.Range(0, size).Select(rank => new Thread(() =>
        {
            try { results[rank] = body(new Member(group, rank)); }
            catch (Exception e)
            {
                errors[rank] = e;
                group.Fail();
            }
        }, maxStackSize: 16 << 20)).ToArray();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        var first = errors.FirstOrDefault(e => e is not null and not BrokenGroupException);
        if (first is not null) throw new AggregateException($"a rank failed: {first.Message}", errors.Where(e => e is not null)!);
        if (errors.Any(e => e is not null)) throw errors.First(e => e is not null)!;
        return results;
    }

    private sealed class BrokenGroupException() : Exception("another rank failed");

    private sealed class Group(int size)
    {
        public readonly int Size = size;
        public readonly object?[] Slots = new object?[size];
        private readonly Barrier _barrier = new(size);
        private readonly Lock _gate = new();
        /// <summary>The barrier phase in which a rank failed (long.MaxValue while none has).</summary>
        private long _failedInPhase = long.MaxValue;

        public void Fail()
        {
            lock (_gate)
            {
                _failedInPhase = Math.Min(_failedInPhase, _barrier.CurrentPhaseNumber);
                _barrier.RemoveParticipant();
            }
        }

        public void Meet()
        {
            // A rank that failed removes itself, which can complete the barrier without it: a meeting counts only when
            // no rank failed before it was complete (a failure in a later phase, e.g. right after this meeting, does
            // not undo it). The phase cannot advance before this rank signals, so reading it first is safe.
            long phase = _barrier.CurrentPhaseNumber;
            bool met = !FailedBefore(phase + 1) && _barrier.SignalAndWait(TimeSpan.FromMinutes(2)) && !FailedBefore(phase + 1);
            if (!met) throw new BrokenGroupException();
        }

        private bool FailedBefore(long phase)
        {
            lock (_gate) return _failedInPhase < phase;
        }
    }

    private sealed class Member(Group group, int rank) : ICommunicator
    {
        public int Rank => rank;
        public int Size => group.Size;

        /// <summary>Deposits this rank's value, waits for all, computes from every rank's, waits until all have
        /// read.</summary>
        private TResult Exchange<TResult>(object value, Func<object?[], TResult> combine)
        {
            group.Slots[rank] = value;
            group.Meet();
            var result = combine(group.Slots);
            group.Meet();
            return result;
        }

        public void AllReduceSum(Tensor tensor)
        {
            using var mine = tensor.clone();
            using var sum = Exchange(mine, slots =>
            {
                var s = ((Tensor)slots[0]!).clone();
                for (int r = 1; r < slots.Length; r++) s.add_((Tensor)slots[r]!);
                return s;
            });
            tensor.copy_(sum);
        }

        public bool Any(bool flag) => Exchange(flag, slots => slots.Any(s => (bool)s!));

        public long[] AllGather(long value) => Exchange(value, slots => slots.Select(s => (long)s!).ToArray());

        public void Broadcast(Span<byte> buffer, int root)
        {
            var copy = Exchange(buffer.ToArray(), slots => (byte[])slots[root]!);
            copy.CopyTo(buffer);
        }

        public Tensor? Gather(Tensor local, int root)
        {
            var copy = local.clone();
            var all = Exchange(copy, slots => rank == root ? cat(slots.Select(s => (Tensor)s!).ToArray(), 0) : null);
            copy.Dispose();
            return all;
        }
    }
}
