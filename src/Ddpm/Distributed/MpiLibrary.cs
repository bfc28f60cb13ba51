using System.Runtime.InteropServices;

namespace Ddpm.Distributed;

/// <summary>
/// A P/Invoke binding for the two dozen Open MPI C functions ddpm calls, resolved from <c>libmpi.so.40</c> at run time.
/// <para>
/// Why not MPI.NET (NuGet <c>MPI.NET</c> 1.4.0): its package binds to Microsoft MPI (<c>msmpi.dll</c>) and its integer
/// handle constants; against Debian's Open MPI 4.1.4 it fails at <c>MPI_Init</c> with DllNotFoundException (tried).
/// Open MPI's handles are not integers but the addresses of exported objects: <c>MPI_COMM_WORLD</c> is
/// <c>&amp;ompi_mpi_comm_world</c>, <c>MPI_FLOAT</c> <c>&amp;ompi_mpi_float</c>, <c>MPI_SUM</c>
/// <c>&amp;ompi_mpi_op_sum</c>, and <c>MPI_IN_PLACE</c> is <c>(void*)1</c> (mpi.h), so they are taken with
/// <see cref="NativeLibrary.GetExport"/>.
/// </para>
/// <para>
/// The library is opened with <c>dlopen(RTLD_NOW | RTLD_GLOBAL)</c>, not <see cref="NativeLibrary.Load(string)"/>
/// (which opens it local): Open MPI loads its components (<c>mca_*.so</c>) as plugins that resolve libmpi's and
/// libopen-pal's symbols from the global namespace, as mpi4py does for Python. <c>$DDPM_MPI_LIBRARY</c> names another
/// file.
/// </para>
/// </summary>
internal sealed unsafe class MpiLibrary
{
    /// <summary>The environment variable naming the MPI library file to load instead of <c>libmpi.so.40</c>.</summary>
    public const string Variable = "DDPM_MPI_LIBRARY";

    public const int ThreadSerialized = 2; // MPI_THREAD_SERIALIZED in Open MPI's mpi.h
    public const int AnySource = -1;       // MPI_ANY_SOURCE
    public const int StatusBytes = 24;     // sizeof(MPI_Status): MPI_SOURCE, MPI_TAG, MPI_ERROR, _cancelled, size_t _ucount
    public static readonly IntPtr InPlace = 1; // MPI_IN_PLACE

    public IntPtr CommWorld { get; }
    public IntPtr Float { get; }
    public IntPtr Double { get; }
    public IntPtr Int64 { get; }
    public IntPtr Int { get; }
    public IntPtr Byte { get; }
    public IntPtr Sum { get; }
    public IntPtr Max { get; }

    public readonly delegate* unmanaged<int*, int> Initialized;
    public readonly delegate* unmanaged<int*, IntPtr, int, int*, int> InitThread;
    public readonly delegate* unmanaged<int> Finalize;
    public readonly delegate* unmanaged<IntPtr, int, int> Abort;
    public readonly delegate* unmanaged<IntPtr, int*, int> CommRank;
    public readonly delegate* unmanaged<IntPtr, int*, int> CommSize;
    public readonly delegate* unmanaged<IntPtr, int> Barrier;
    public readonly delegate* unmanaged<IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr, int> Allreduce;
    public readonly delegate* unmanaged<IntPtr, int, IntPtr, int, IntPtr, int> Bcast;
    public readonly delegate* unmanaged<IntPtr, int, IntPtr, IntPtr, int, IntPtr, IntPtr, int> Allgather;
    public readonly delegate* unmanaged<IntPtr, int, IntPtr, IntPtr, int*, int*, IntPtr, int, IntPtr, int> Gatherv;
    public readonly delegate* unmanaged<int, byte*, int*, int> ErrorString;
    // Non-blocking collectives (MPI-3) and point-to-point calls: the waits with a deadline (MpiCommunicator).
    public readonly delegate* unmanaged<IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr, IntPtr*, int> Iallreduce;
    public readonly delegate* unmanaged<IntPtr, int, IntPtr, int, IntPtr, IntPtr*, int> Ibcast;
    public readonly delegate* unmanaged<IntPtr, int, IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr*, int> Iallgather;
    public readonly delegate* unmanaged<IntPtr, int, IntPtr, IntPtr, int*, int*, IntPtr, int, IntPtr, IntPtr*, int> Igatherv;
    public readonly delegate* unmanaged<IntPtr*, int*, byte*, int> Test;
    public readonly delegate* unmanaged<int, int, IntPtr, int*, byte*, int> Iprobe;
    public readonly delegate* unmanaged<IntPtr, int, IntPtr, int, int, IntPtr, byte*, int> Recv;
    public readonly delegate* unmanaged<IntPtr, int, IntPtr, int, int, IntPtr, int> Send;
    public readonly delegate* unmanaged<IntPtr, int, IntPtr, int, int, IntPtr, IntPtr*, int> Isend;
    public readonly delegate* unmanaged<IntPtr, int, IntPtr, int, int, IntPtr, IntPtr*, int> Irecv;

    private MpiLibrary(IntPtr handle)
    {
        IntPtr Export(string name) => NativeLibrary.TryGetExport(handle, name, out var address) ? address
            : throw new DistributedException($"the MPI library has no symbol {name}; is it Open MPI (4.x or 5.x)?");
        CommWorld = Export("ompi_mpi_comm_world");
        Float = Export("ompi_mpi_float");
        Double = Export("ompi_mpi_double");
        Int64 = Export("ompi_mpi_int64_t");
        Int = Export("ompi_mpi_int");
        Byte = Export("ompi_mpi_byte");
        Sum = Export("ompi_mpi_op_sum");
        Max = Export("ompi_mpi_op_max");
        Initialized = (delegate* unmanaged<int*, int>)Export("MPI_Initialized");
        InitThread = (delegate* unmanaged<int*, IntPtr, int, int*, int>)Export("MPI_Init_thread");
        Finalize = (delegate* unmanaged<int>)Export("MPI_Finalize");
        Abort = (delegate* unmanaged<IntPtr, int, int>)Export("MPI_Abort");
        CommRank = (delegate* unmanaged<IntPtr, int*, int>)Export("MPI_Comm_rank");
        CommSize = (delegate* unmanaged<IntPtr, int*, int>)Export("MPI_Comm_size");
        Barrier = (delegate* unmanaged<IntPtr, int>)Export("MPI_Barrier");
        Allreduce = (delegate* unmanaged<IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr, int>)Export("MPI_Allreduce");
        Bcast = (delegate* unmanaged<IntPtr, int, IntPtr, int, IntPtr, int>)Export("MPI_Bcast");
        Allgather = (delegate* unmanaged<IntPtr, int, IntPtr, IntPtr, int, IntPtr, IntPtr, int>)Export("MPI_Allgather");
        Gatherv = (delegate* unmanaged<IntPtr, int, IntPtr, IntPtr, int*, int*, IntPtr, int, IntPtr, int>)Export("MPI_Gatherv");
        ErrorString = (delegate* unmanaged<int, byte*, int*, int>)Export("MPI_Error_string");
        Iallreduce = (delegate* unmanaged<IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr, IntPtr*, int>)Export("MPI_Iallreduce");
        Ibcast = (delegate* unmanaged<IntPtr, int, IntPtr, int, IntPtr, IntPtr*, int>)Export("MPI_Ibcast");
        Iallgather = (delegate* unmanaged<IntPtr, int, IntPtr, IntPtr, int, IntPtr, IntPtr, IntPtr*, int>)Export("MPI_Iallgather");
        Igatherv = (delegate* unmanaged<IntPtr, int, IntPtr, IntPtr, int*, int*, IntPtr, int, IntPtr, IntPtr*, int>)Export("MPI_Igatherv");
        Test = (delegate* unmanaged<IntPtr*, int*, byte*, int>)Export("MPI_Test");
        Iprobe = (delegate* unmanaged<int, int, IntPtr, int*, byte*, int>)Export("MPI_Iprobe");
        Recv = (delegate* unmanaged<IntPtr, int, IntPtr, int, int, IntPtr, byte*, int>)Export("MPI_Recv");
        Send = (delegate* unmanaged<IntPtr, int, IntPtr, int, int, IntPtr, int>)Export("MPI_Send");
        Isend = (delegate* unmanaged<IntPtr, int, IntPtr, int, int, IntPtr, IntPtr*, int>)Export("MPI_Isend");
        Irecv = (delegate* unmanaged<IntPtr, int, IntPtr, int, int, IntPtr, IntPtr*, int>)Export("MPI_Irecv");
    }

    /// <summary>Opens Open MPI's library (see the class comment), or throws one clear error naming what was
    /// tried.</summary>
    public static MpiLibrary Load()
    {
        var explicitPath = Environment.GetEnvironmentVariable(Variable);
        string[] candidates = string.IsNullOrWhiteSpace(explicitPath) ? ["libmpi.so.40", "libmpi.so"] : [explicitPath];
        var errors = new List<string>();
        foreach (var name in candidates)
        {
            var handle = NativeLoader.OpenGlobal(name, out var error);
            if (handle != IntPtr.Zero) return new MpiLibrary(handle);
            errors.Add(error);
        }
        throw new DistributedException("launched under mpirun, but Open MPI's library could not be loaded (" + string.Join("; ", errors) +
            $"). Install it (Debian/Ubuntu: apt-get install openmpi-bin) or set {Variable} to its path.");
    }

    /// <summary>Throws a <see cref="DistributedException"/> naming <paramref name="call"/> and MPI's message when
    /// <paramref name="code"/> is not MPI_SUCCESS.</summary>
    public void Check(int code, string call)
    {
        if (code == 0) return;
        var text = new byte[512]; // MPI_MAX_ERROR_STRING is 256 in Open MPI
        int length = 0;
        fixed (byte* p = text)
            if (ErrorString(code, p, &length) != 0) length = 0;
        var message = length > 0 ? System.Text.Encoding.ASCII.GetString(text, 0, length) : $"error {code}";
        throw new DistributedException($"{call} failed: {message}");
    }
}
