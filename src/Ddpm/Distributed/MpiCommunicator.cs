using System.Diagnostics;
using System.Globalization;
using static TorchSharp.torch;

namespace Ddpm.Distributed;

/// <summary>
/// <see cref="ICommunicator"/> over Open MPI's <c>MPI_COMM_WORLD</c> (<see cref="MpiLibrary"/>). One per process:
/// <see cref="Start"/> initialises MPI, <see cref="Finish"/> finalises it after a successful run, <see cref="Abort"/>
/// ends the whole job after a failure on this rank (the other ranks may be waiting for it inside a collective). MPI's
/// default error handler (errors are fatal to the job) stays in force, so a peer that dies never leaves a rank waiting.
/// One that stops without dying (SIGSTOP, a hang, a machine swapping) is caught by a deadline: each collective is
/// started non-blocking and polled; past <see cref="Timeout"/> the rank asks every other rank where it is, names those
/// that do not answer and ends the job with MPI_Abort.
/// </summary>
public sealed unsafe class MpiCommunicator : ICommunicator
{
    /// <summary>
    /// The deadline of one collective in seconds (<c>0</c>: none); <see cref="DefaultTimeout"/> when unset.
    /// </summary>
    public const string TimeoutVariable = "DDPM_MPI_TIMEOUT";
    /// <summary>
    /// Long enough for rank 0 to fetch a data set or write a checkpoint and a preview while the others wait.
    /// </summary>
    public static readonly TimeSpan DefaultTimeout = TimeSpan.FromMinutes(10);
    /// <summary>How long a rank past its deadline waits for the others to say where they are.</summary>
    private static readonly TimeSpan AnswerWait = TimeSpan.FromSeconds(10);
    private const int PingTag = 0x5DD1, ReplyTag = 0x5DD2;

    private static readonly object Gate = new();
    private static MpiCommunicator? _started;
    private readonly MpiLibrary _mpi;
    private readonly long[] _wire; // pinned: the question and the answers of a rank past its deadline
    private long _collectives;

    public int Rank { get; }
    public int Size { get; }
    /// <summary>
    /// How long a collective waits for the other ranks before this rank ends the job (null: forever).
    /// </summary>
    public TimeSpan? Timeout { get; }
    /// <summary>The launch the process was started with (local rank and size as mpirun placed it).</summary>
    public MpiLaunch Launch { get; }

    private MpiCommunicator(MpiLibrary mpi, MpiLaunch launch)
    {
        _mpi = mpi;
        Launch = launch;
        int rank, size;
        mpi.Check(mpi.CommRank(mpi.CommWorld, &rank), "MPI_Comm_rank");
        mpi.Check(mpi.CommSize(mpi.CommWorld, &size), "MPI_Comm_size");
        if (rank != launch.Rank || size != launch.Size)
            throw new DistributedException($"MPI says rank {rank} of {size}, the launcher's environment rank {launch.Rank} of {launch.Size}");
        (Rank, Size) = (rank, size);
        Timeout = ParseTimeout(Environment.GetEnvironmentVariable(TimeoutVariable));
        _wire = GC.AllocateArray<long>(1 + size, pinned: true);
    }

    /// <summary>The deadline <paramref name="text"/> (seconds) gives: the default when empty, null for 0.</summary>
    /// <exception cref="DistributedException">Not a number of seconds ≥ 0.</exception>
    public static TimeSpan? ParseTimeout(string? text)
    {
        if (string.IsNullOrWhiteSpace(text)) return DefaultTimeout;
        if (!double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var seconds) || !double.IsFinite(seconds) || seconds < 0
            || seconds > TimeSpan.MaxValue.TotalSeconds / 2)
            throw new DistributedException($"{TimeoutVariable} must be a number of seconds >= 0 (0: wait forever), got '{text}'");
        return seconds == 0 ? null : TimeSpan.FromSeconds(seconds);
    }

    /// <summary>The communicator of this process once <see cref="Start"/> ran, else null.</summary>
    public static MpiCommunicator? Current
    {
        get { lock (Gate) return _started; }
    }

    /// <summary>Loads Open MPI and initialises it (once per process; later calls return the same
    /// communicator).</summary>
    /// <exception cref="DistributedException">the library is missing or initialisation fails.</exception>
    public static MpiCommunicator Start(MpiLaunch launch)
    {
        lock (Gate)
        {
            if (_started is not null) return _started;
            var mpi = MpiLibrary.Load();
            int initialized = 0, provided = 0;
            mpi.Check(mpi.Initialized(&initialized), "MPI_Initialized");
            // SERIALIZED: collectives come from whichever thread runs the command, one at a time.
            if (initialized == 0) mpi.Check(mpi.InitThread(null, IntPtr.Zero, MpiLibrary.ThreadSerialized, &provided), "MPI_Init_thread");
            return _started = new MpiCommunicator(mpi, launch);
        }
    }

    /// <summary>Ends MPI after a successful run on every rank (collective: every rank must reach it).</summary>
    public void Finish()
    {
        lock (Gate)
        {
            if (_started != this) return;
            _mpi.Check(_mpi.Finalize(), "MPI_Finalize");
            _started = null;
        }
    }

    /// <summary>Ends the whole job with <paramref name="exitCode"/> (mpirun stops every rank); does not
    /// return.</summary>
    public void Abort(int exitCode)
    {
        Console.Out.Flush();
        Console.Error.Flush();
        _mpi.Abort(_mpi.CommWorld, exitCode);
        Environment.Exit(exitCode); // MPI_Abort does not return; this is for an MPI that does
    }

    public void AllReduceSum(Tensor tensor)
    {
        var type = TypeOf(tensor);
        if (tensor.device_type != TorchSharp.DeviceType.CPU) throw new ArgumentException("MPI reduces CPU tensors; CUDA tensors go through NCCL", nameof(tensor));
        var address = TensorMemory.Address(tensor);
        long count = tensor.numel(), done = 0;
        int elementSize = (int)tensor.ElementSize;
        while (done < count)
        {
            int chunk = (int)Math.Min(count - done, 1 << 30); // MPI counts are int
            IntPtr request;
            _mpi.Check(_mpi.Iallreduce(MpiLibrary.InPlace, address + (nint)(done * elementSize), chunk, type, _mpi.Sum, _mpi.CommWorld, &request), "MPI_Iallreduce");
            Wait(&request, "MPI_Allreduce");
            done += chunk;
        }
    }

    public bool Any(bool flag)
    {
        int value = flag ? 1 : 0;
        IntPtr request;
        _mpi.Check(_mpi.Iallreduce(MpiLibrary.InPlace, (IntPtr)(&value), 1, _mpi.Int, _mpi.Max, _mpi.CommWorld, &request), "MPI_Iallreduce");
        Wait(&request, "MPI_Allreduce");
        return value != 0;
    }

    public long[] AllGather(long value)
    {
        var all = new long[Size];
        IntPtr request;
        fixed (long* p = all)
        {
            _mpi.Check(_mpi.Iallgather((IntPtr)(&value), 1, _mpi.Int64, (IntPtr)p, 1, _mpi.Int64, _mpi.CommWorld, &request), "MPI_Iallgather");
            Wait(&request, "MPI_Allgather");
        }
        return all;
    }

    public void Broadcast(Span<byte> buffer, int root)
    {
        IntPtr request;
        fixed (byte* p = buffer)
        {
            _mpi.Check(_mpi.Ibcast((IntPtr)p, buffer.Length, _mpi.Byte, root, _mpi.CommWorld, &request), "MPI_Ibcast");
            Wait(&request, "MPI_Bcast");
        }
    }

    public Tensor? Gather(Tensor local, int root)
    {
        if (local.dtype != ScalarType.Float32 || local.device_type != TorchSharp.DeviceType.CPU || !local.is_contiguous())
            throw new ArgumentException("Gather takes contiguous CPU float32 tensors", nameof(local));
        long rowElements = local.shape.Skip(1).Aggregate(1L, (a, b) => a * b);
        var rows = AllGather(local.shape[0]);
        long total = rows.Sum() * rowElements;
        if (total > int.MaxValue) throw new ArgumentException($"Gather of {total} elements exceeds MPI's int counts", nameof(local));
        var counts = rows.Select(r => (int)(r * rowElements)).ToArray();
        var displacements = new int[Size];
        for (int r = 1; r < Size; r++) displacements[r] = displacements[r - 1] + counts[r - 1];
        Tensor? all = Rank == root ? empty([rows.Sum(), .. local.shape.Skip(1)], float32) : null;
        var receive = all is null ? IntPtr.Zero : TensorMemory.Address(all);
        IntPtr request;
        fixed (int* c = counts, d = displacements)
        {
            _mpi.Check(_mpi.Igatherv(TensorMemory.Address(local), (int)local.numel(), _mpi.Float, receive, c, d, _mpi.Float, root, _mpi.CommWorld, &request),
                "MPI_Igatherv");
            Wait(&request, "MPI_Gatherv");
        }
        return all;
    }

    /// <summary>
    /// Polls a started collective until it completes: spinning for its first milliseconds, then yielding, then sleeping
    /// a millisecond between polls (an idle rank does not hold a core another needs). Meanwhile it answers the question
    /// of a rank past its deadline; past its own it ends the job (<see cref="EndWaiting"/>).
    /// </summary>
    private void Wait(IntPtr* request, string call)
    {
        long sequence = ++_collectives;
        long started = Stopwatch.GetTimestamp();
        int done = 0;
        while (true)
        {
            _mpi.Check(_mpi.Test(request, &done, null), "MPI_Test");
            if (done != 0) return;
            var waited = Stopwatch.GetElapsedTime(started);
            if (waited < TimeSpan.FromMilliseconds(20)) continue;
            Answer();
            if (Timeout is { } limit && waited >= limit) EndWaiting(call, sequence, limit);
            Thread.Sleep(waited < TimeSpan.FromSeconds(1) ? 0 : 1);
        }
    }

    /// <summary>Tells a rank that asks (it is past its deadline) which collective this one waits in.</summary>
    private void Answer()
    {
        byte* status = stackalloc byte[MpiLibrary.StatusBytes];
        int pending = 0;
        _mpi.Check(_mpi.Iprobe(MpiLibrary.AnySource, PingTag, _mpi.CommWorld, &pending, status), "MPI_Iprobe");
        if (pending == 0) return;
        int source = *(int*)status; // MPI_Status.MPI_SOURCE
        long question = 0, answer = _collectives;
        _mpi.Check(_mpi.Recv((IntPtr)(&question), 1, _mpi.Int64, source, PingTag, _mpi.CommWorld, null), "MPI_Recv");
        // The asker has its receive posted, so this small send completes at once.
        _mpi.Check(_mpi.Send((IntPtr)(&answer), 1, _mpi.Int64, source, ReplyTag, _mpi.CommWorld), "MPI_Send");
    }

    /// <summary>
    /// Past the deadline in collective <paramref name="sequence"/>: asks every other rank where it is, waits
    /// <see cref="AnswerWait"/> for the answers (answering questions meanwhile), then prints one line naming the ranks
    /// that did not answer and ends the job. Ranks that answered wait in a collective; one that did not is stopped,
    /// hung, or busy outside MPI for longer than the deadline.
    /// </summary>
    private void EndWaiting(string call, long sequence, TimeSpan limit)
    {
        var receives = new IntPtr[Size];
        var sends = new IntPtr[Size];
        var answered = new bool[Size];
        answered[Rank] = true;
        fixed (long* wire = _wire)
        {
            wire[0] = sequence;
            for (int r = 0; r < Size; r++)
            {
                if (r == Rank) continue;
                fixed (IntPtr* receive = &receives[r], send = &sends[r])
                {
                    _mpi.Check(_mpi.Irecv((IntPtr)(wire + 1 + r), 1, _mpi.Int64, r, ReplyTag, _mpi.CommWorld, receive), "MPI_Irecv");
                    _mpi.Check(_mpi.Isend((IntPtr)wire, 1, _mpi.Int64, r, PingTag, _mpi.CommWorld, send), "MPI_Isend");
                }
            }
            long started = Stopwatch.GetTimestamp();
            while (!answered.All(a => a) && Stopwatch.GetElapsedTime(started) < AnswerWait)
            {
                for (int r = 0; r < Size; r++)
                {
                    if (answered[r]) continue;
                    int flag = 0;
                    fixed (IntPtr* receive = &receives[r]) _mpi.Check(_mpi.Test(receive, &flag, null), "MPI_Test");
                    answered[r] = flag != 0;
                }
                Answer();
                Thread.Sleep(1);
            }
        }
        var silent = Enumerable.Range(0, Size).Where(r => !answered[r]).ToList();
        var seconds = limit.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture);
        var who = silent.Count > 0
            ? $"no word from rank {string.Join(", ", silent)} for {seconds} s: the other ranks wait for it in {call} (collective {sequence}); " +
              "it is stopped (SIGSTOP), hung, or busy outside MPI for longer than that"
            : $"{call} (collective {sequence}) did not complete in {seconds} s although every rank answers: the ranks call different collectives";
        Console.Error.WriteLine($"rank {Rank}: error: {who}. Ending the job ({TimeoutVariable} sets the limit in seconds; 0 waits forever)");
        Abort(CliFailure);
    }

    /// <summary>The exit code of a failure, as the CLI's.</summary>
    private const int CliFailure = 1;

    private IntPtr TypeOf(Tensor tensor) => tensor.dtype switch
    {
        ScalarType.Float32 => _mpi.Float,
        ScalarType.Float64 => _mpi.Double,
        ScalarType.Int64 => _mpi.Int64,
        var other => throw new ArgumentException($"MPI reduction of {other} tensors is not supported (float32, float64, int64)", nameof(tensor)),
    };
}
