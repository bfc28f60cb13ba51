using static TorchSharp.torch;

namespace Ddpm.Distributed;

/// <summary>
/// A 64-bit checksum of a tensor's bits (FNV-1a over its 8-byte words, then the tail bytes), to tell whether ranks that
/// should hold bit-identical weights do: any single changed bit changes it. Not a cryptographic hash.
/// </summary>
public static class WeightChecksum
{
    /// <summary>The checksum of <paramref name="tensor"/>'s elements in order (a CUDA tensor is copied to the host
    /// first).</summary>
    public static unsafe ulong Of(Tensor tensor)
    {
        using var scope = NewDisposeScope();
        var host = tensor.detach().cpu().contiguous();
        long bytes = host.numel() * host.ElementSize;
        var p = (byte*)TensorMemory.Address(host);
        const ulong prime = 0x100000001B3UL;
        ulong h = 0xCBF29CE484222325UL;
        long words = bytes / 8;
        for (long done = 0; done < words;)
        {
            var span = new ReadOnlySpan<ulong>(p + done * 8, (int)Math.Min(words - done, int.MaxValue));
            foreach (var w in span) h = (h ^ w) * prime;
            done += span.Length;
        }
        for (long i = words * 8; i < bytes; i++) h = (h ^ p[i]) * prime;
        return h;
    }
}
