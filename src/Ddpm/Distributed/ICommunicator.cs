using static TorchSharp.torch;

namespace Ddpm.Distributed;

/// <summary>
/// The few collective operations data-parallel training and sharded sampling need, over a fixed group of ranks
/// 0 … <see cref="Size"/> − 1. Every rank calls the same operations in the same order (they block until all have).
/// Implemented over MPI (<see cref="MpiCommunicator"/>, one rank per process); the tests run ranks as threads of one
/// process.
/// </summary>
public interface ICommunicator
{
    int Rank { get; }
    int Size { get; }

    /// <summary>Replaces a contiguous CPU tensor (float32, float64 or int64) by its element-wise sum over all
    /// ranks.</summary>
    void AllReduceSum(Tensor tensor);

    /// <summary>Whether <paramref name="flag"/> is true on any rank (the same answer on every rank).</summary>
    bool Any(bool flag);

    /// <summary>Every rank's <paramref name="value"/>, indexed by rank.</summary>
    long[] AllGather(long value);

    /// <summary>Copies <paramref name="buffer"/> of rank <paramref name="root"/> into every other rank's (same length
    /// everywhere).</summary>
    void Broadcast(Span<byte> buffer, int root);

    /// <summary>
    /// Concatenates every rank's contiguous CPU float32 <paramref name="local"/> (any first dimension, the rest equal)
    /// along dimension 0 in rank order, on rank <paramref name="root"/>; null on the others.
    /// </summary>
    Tensor? Gather(Tensor local, int root);
}
