using static TorchSharp.torch;

namespace Ddpm.Distributed;

/// <summary>
/// <see cref="ICommunicator"/> over Open MPI's <c>MPI_COMM_WORLD</c> (<see cref="MpiLibrary"/>). One per process:
/// <see cref="Start"/> initialises MPI, <see cref="Finish"/> finalises it after a successful run, <see cref="Abort"/> ends the
/// whole job after a failure on this rank (the other ranks may be waiting for it inside a collective).
/// MPI's default error handler (errors are fatal to the job) stays in force, so a broken peer never leaves a rank waiting.
/// </summary>
public sealed unsafe class MpiCommunicator : ICommunicator
{
    private static readonly object Gate = new();
    private static MpiCommunicator? _started;
    private readonly MpiLibrary _mpi;

    public int Rank { get; }
    public int Size { get; }
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
    }

    /// <summary>The communicator of this process once <see cref="Start"/> ran, else null.</summary>
    public static MpiCommunicator? Current
    {
        get { lock (Gate) return _started; }
    }

    /// <summary>Loads Open MPI and initialises it (once per process; later calls return the same communicator).</summary>
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

    /// <summary>Ends the whole job with <paramref name="exitCode"/> (mpirun stops every rank); does not return.</summary>
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
            _mpi.Check(_mpi.Allreduce(MpiLibrary.InPlace, address + (nint)(done * elementSize), chunk, type, _mpi.Sum, _mpi.CommWorld), "MPI_Allreduce");
            done += chunk;
        }
    }

    public bool Any(bool flag)
    {
        int value = flag ? 1 : 0;
        _mpi.Check(_mpi.Allreduce(MpiLibrary.InPlace, (IntPtr)(&value), 1, _mpi.Int, _mpi.Max, _mpi.CommWorld), "MPI_Allreduce");
        return value != 0;
    }

    public long[] AllGather(long value)
    {
        var all = new long[Size];
        fixed (long* p = all)
            _mpi.Check(_mpi.Allgather((IntPtr)(&value), 1, _mpi.Int64, (IntPtr)p, 1, _mpi.Int64, _mpi.CommWorld), "MPI_Allgather");
        return all;
    }

    public void Broadcast(Span<byte> buffer, int root)
    {
        fixed (byte* p = buffer)
            _mpi.Check(_mpi.Bcast((IntPtr)p, buffer.Length, _mpi.Byte, root, _mpi.CommWorld), "MPI_Bcast");
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
        fixed (int* c = counts, d = displacements)
            _mpi.Check(_mpi.Gatherv(TensorMemory.Address(local), (int)local.numel(), _mpi.Float, receive, c, d, _mpi.Float, root, _mpi.CommWorld), "MPI_Gatherv");
        return all;
    }

    private IntPtr TypeOf(Tensor tensor) => tensor.dtype switch
    {
        ScalarType.Float32 => _mpi.Float,
        ScalarType.Float64 => _mpi.Double,
        ScalarType.Int64 => _mpi.Int64,
        var other => throw new ArgumentException($"MPI reduction of {other} tensors is not supported (float32, float64, int64)", nameof(tensor)),
    };
}
