using System.Runtime.InteropServices;
using static TorchSharp.torch;

namespace Ddpm.Distributed;

/// <summary>
/// The address of a tensor's first element, for handing its memory to MPI or NCCL. TorchSharp 0.107 has no public
/// <c>data_ptr</c>, so this calls its native shim's <c>THSTensor_data</c> (which returns <c>at::Tensor::data_ptr()</c>,
/// the storage offset included) on <see cref="Tensor.Handle"/>: a host address for CPU tensors, a device address for
/// CUDA ones.
/// </summary>
internal static class TensorMemory
{
    /// <summary>The first element's address; the tensor must be contiguous (checked), and stay alive while it is
    /// used.</summary>
    public static IntPtr Address(Tensor tensor)
    {
        if (!tensor.is_contiguous()) throw new ArgumentException("the tensor must be contiguous", nameof(tensor));
        var address = THSTensor_data(tensor.Handle);
        if (address == IntPtr.Zero && tensor.numel() > 0) throw new InvalidOperationException("THSTensor_data returned null");
        return address;
    }

    [DllImport("LibTorchSharp")]
    private static extern IntPtr THSTensor_data(IntPtr handle);
}
