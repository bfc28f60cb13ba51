using static TorchSharp.torch;

namespace Ddpm.Data;

/// <summary>Allocates uint8 CPU tensors that readers fill in place, so a file's pixels are copied once, not
/// twice.</summary>
internal static class ByteTensor
{
    /// <summary>An uninitialised uint8 tensor of <paramref name="shape"/>; <paramref name="path"/> names the source in
    /// the error when it is too large.</summary>
    public static Tensor Empty(long[] shape, string path)
    {
        long total = 1;
        foreach (var d in shape) total = checked(total * d);
        // Tensor.bytes is a Span (int-indexed): 2 GiB of uint8 pixels per set is far beyond any in-memory image set
        // here.
        if (total > int.MaxValue)
            throw new DataException(path, $"{total:N0} pixel bytes [{string.Join(", ", shape)}] exceed the 2 GiB an in-memory set may hold");
        return empty(shape, ScalarType.Byte);
    }

    /// <summary>The tensor's storage as bytes (CPU, contiguous): writes go straight into the tensor.</summary>
    public static Span<byte> Span(Tensor tensor) => tensor.bytes;
}
