using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Ddpm.Distributed;

/// <summary>
/// Sums CUDA float32 tensors across ranks with NCCL (<c>libnccl.so.2</c>, the library every PyTorch CUDA install
/// carries), one communicator per process over one GPU each. A small P/Invoke binding of five functions.
/// <para>
/// Set-up: rank 0 makes an <c>ncclUniqueId</c> (<c>ncclGetUniqueId</c>), MPI broadcasts its 128 bytes, every rank calls
/// <c>ncclCommInitRank</c> on its current CUDA device, device 0, which is its own GPU because
/// <see cref="DistributedJob"/> narrows <c>CUDA_VISIBLE_DEVICES</c> to one GPU per local rank before CUDA starts.
/// </para>
/// <para>
/// Ordering: <c>ncclAllReduce</c> is enqueued on CUDA stream 0, the legacy default stream. TorchSharp 0.107 has no
/// stream API, and libtorch's current stream is its default stream, which is that same legacy stream (PyTorch is not
/// built with per-thread default streams); so the reduce runs after the backward kernels that wrote the gradient and
/// before the Adam kernels that read it, with no host synchronisation. Errors of the enqueued work itself surface as
/// later CUDA errors (NCCL's asynchronous error query is not polled).
/// </para>
/// <para>Not run in this project's CI (no GPU): compiled and reasoned about only; see docs/distributed.md. So it is
/// opt-in (<see cref="Wanted"/>, <c>DDPM_NCCL=1</c>); without it CUDA gradients are summed by MPI through host copies
/// (<see cref="DataParallel"/>).</para>
/// </summary>
public sealed unsafe class NcclAllReduce : IDisposable
{
    /// <summary>The environment variable naming the NCCL library file to load instead of <c>libnccl.so.2</c>.</summary>
    public const string Variable = "DDPM_NCCL_LIBRARY";

    /// <summary><c>DDPM_NCCL=1</c> turns NCCL on for CUDA data parallelism; unset or 0: off (never run on a GPU).
    /// </summary>
    public const string EnableVariable = "DDPM_NCCL";

    /// <summary>Whether <see cref="EnableVariable"/> is 1.</summary>
    /// <exception cref="ArgumentException">It holds something other than 0 or 1.</exception>
    public static bool Wanted => Runtime.DevicePolicy.Flag(EnableVariable) == true;
    private const int NcclFloat32 = 7, NcclSum = 0; // ncclDataType_t / ncclRedOp_t in nccl.h

    [StructLayout(LayoutKind.Sequential)]
    private struct UniqueId
    {
        public fixed byte Bytes[128]; // NCCL_UNIQUE_ID_BYTES
    }

    private readonly delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int> _allReduce;
    private readonly delegate* unmanaged<IntPtr, int> _destroy;
    private readonly delegate* unmanaged<int, IntPtr> _errorString;
    private IntPtr _comm;

    /// <summary>NCCL's version as nccl.h encodes it (e.g. 22703 for 2.27.3).</summary>
    public int Version { get; }

    private NcclAllReduce(IntPtr library, ICommunicator mpi)
    {
        IntPtr Export(string name) => NativeLibrary.TryGetExport(library, name, out var address) ? address
            : throw new DistributedException($"the NCCL library has no symbol {name}");
        var getUniqueId = (delegate* unmanaged<UniqueId*, int>)Export("ncclGetUniqueId");
        var initRank = (delegate* unmanaged<IntPtr*, int, UniqueId, int, int>)Export("ncclCommInitRank");
        var getVersion = (delegate* unmanaged<int*, int>)Export("ncclGetVersion");
        _allReduce = (delegate* unmanaged<IntPtr, IntPtr, nuint, int, int, IntPtr, IntPtr, int>)Export("ncclAllReduce");
        _destroy = (delegate* unmanaged<IntPtr, int>)Export("ncclCommDestroy");
        _errorString = (delegate* unmanaged<int, IntPtr>)Export("ncclGetErrorString");
        int version = 0;
        Check(getVersion(&version), "ncclGetVersion");
        Version = version;
        UniqueId id = default;
        if (mpi.Rank == 0) Check(getUniqueId(&id), "ncclGetUniqueId");
        mpi.Broadcast(new Span<byte>(id.Bytes, 128), root: 0);
        IntPtr comm;
        Check(initRank(&comm, mpi.Size, id, mpi.Rank), "ncclCommInitRank");
        _comm = comm;
    }

    /// <summary>
    /// Loads NCCL (<c>$DDPM_NCCL_LIBRARY</c>; else <c>libnccl.so.2</c>, which PyTorch's libtorch_cuda has usually
    /// loaded already; else PyTorch's <c>nvidia/nccl/lib</c> beside <c>$DDPM_LIBTORCH</c>) and joins every rank of
    /// <paramref name="mpi"/> in one NCCL communicator (collective).
    /// </summary>
    public static NcclAllReduce Create(ICommunicator mpi)
    {
        var candidates = new List<string>();
        if (Environment.GetEnvironmentVariable(Variable) is { Length: > 0 } explicitPath) candidates.Add(explicitPath);
        else
        {
            candidates.Add("libnccl.so.2");
            if (Environment.GetEnvironmentVariable(Runtime.LibTorchLocation.Variable) is { Length: > 0 } torchLib)
                candidates.Add(Path.GetFullPath(Path.Combine(torchLib, "..", "..", "nvidia", "nccl", "lib", "libnccl.so.2")));
        }
        foreach (var name in candidates)
            if (NativeLibrary.TryLoad(name, out var handle)) return new NcclAllReduce(handle, mpi);
        throw new DistributedException($"{EnableVariable}=1 asks for NCCL, but it could not be loaded (tried {string.Join(", ", candidates)}); " +
            $"set {Variable} to libnccl.so.2 (PyTorch's site-packages/nvidia/nccl/lib), or unset {EnableVariable} to reduce through MPI");
    }

    /// <summary>Replaces a contiguous CUDA float32 tensor by its element-wise sum over all ranks (enqueued on stream
    /// 0).</summary>
    public void SumInPlace(Tensor tensor)
    {
        ObjectDisposedException.ThrowIf(_comm == IntPtr.Zero, this);
        if (tensor.device_type != TorchSharp.DeviceType.CUDA || tensor.dtype != ScalarType.Float32)
            throw new ArgumentException($"NCCL reduces CUDA float32 tensors here, got {tensor.dtype} on {tensor.device}", nameof(tensor));
        var address = TensorMemory.Address(tensor);
        Check(_allReduce(address, address, (nuint)tensor.numel(), NcclFloat32, NcclSum, _comm, IntPtr.Zero), "ncclAllReduce");
    }

    private void Check(int result, string call)
    {
        if (result == 0) return;
        var text = _errorString is null ? null : Marshal.PtrToStringUTF8(_errorString(result));
        throw new DistributedException($"{call} failed: {text ?? $"ncclResult_t {result}"}");
    }

    public void Dispose()
    {
        if (_comm == IntPtr.Zero) return;
        _destroy(_comm);
        _comm = IntPtr.Zero;
    }
}
