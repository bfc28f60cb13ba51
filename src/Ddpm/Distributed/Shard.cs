using static TorchSharp.torch;

namespace Ddpm.Distributed;

/// <summary>
/// One rank's contiguous part [<see cref="Offset"/>, <see cref="Offset"/> + <see cref="Count"/>) of <see cref="Total"/>
/// items (a global batch, the images of a sampling run). <see cref="Of(long, int, int)"/> gives rank r of R the part
/// [⌊Total·r/R⌋, ⌊Total·(r+1)/R⌋): sizes differ by at most one, and the parts in rank order are 0 … Total − 1, so what
/// the ranks do together is what one process does with all of it.
/// </summary>
public readonly record struct Shard(long Offset, long Count, long Total)
{
    /// <summary>All <paramref name="total"/> items (a single process).</summary>
    public static Shard Whole(long total) => new(0, total, total);

    /// <summary>Rank <paramref name="rank"/>'s part of <paramref name="total"/> items split over
    /// <paramref name="size"/> ranks.</summary>
    public static Shard Of(long total, int rank, int size)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(total);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(size);
        if (rank < 0 || rank >= size) throw new ArgumentOutOfRangeException(nameof(rank), $"rank {rank} is not in 0..{size - 1}");
        long start = (long)((Int128)total * rank / size), end = (long)((Int128)total * (rank + 1) / size);
        return new Shard(start, end - start, total);
    }

    /// <summary>This part's rows of <paramref name="all"/> (dimension 0 of length <see cref="Total"/>), as a
    /// view.</summary>
    public Tensor Of(Tensor all)
    {
        if (all.shape[0] != Total) throw new ArgumentException($"expected {Total} rows, got {all.shape[0]}", nameof(all));
        return all.narrow(0, Offset, Count);
    }

    /// <summary>This part's share of the whole, <see cref="Count"/> / <see cref="Total"/> (0 for an empty
    /// whole).</summary>
    public double Fraction => Total == 0 ? 0 : (double)Count / Total;
}
