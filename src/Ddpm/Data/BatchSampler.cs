using static TorchSharp.torch;

namespace Ddpm.Data;

/// <summary>
/// Splits N examples into batches of indices, one fresh <c>randperm(N)</c> per epoch from a generator seeded with
/// (seed, epoch) alone. An epoch's order therefore does not depend on what ran before it, so a run resumed at
/// (epoch, batch) sees exactly the batches an uninterrupted run would. The last partial batch is kept.
/// </summary>
/// <example>
/// <code>
/// foreach (var (batch, indices) in sampler.Batches(epoch))
/// {
///     using var scope = torch.NewDisposeScope();
///     using var flip = options.RandomFlip ? sampler.FlipGenerator(epoch, batch) : null;
///     var x0 = dataset.Batch(indices, device, flip);
///     ...
/// }
/// </code>
/// </example>
public sealed class BatchSampler
{
    public long Count { get; }
    public int BatchSize { get; }
    public long Seed { get; }
    /// <summary>False keeps the stored order (0, 1, …, N−1) every epoch.</summary>
    public bool Shuffle { get; }

    /// <summary>Batches per epoch, ⌈N / batch size⌉.</summary>
    public int BatchesPerEpoch => (int)((Count + BatchSize - 1) / BatchSize);

    public BatchSampler(long count, int batchSize, long seed, bool shuffle = true)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(count);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(batchSize);
        Count = count;
        BatchSize = batchSize;
        Seed = seed;
        Shuffle = shuffle;
    }

    /// <summary>The epoch's order of all N indices, int64 [N] on the CPU (the caller disposes it).</summary>
    public Tensor Permutation(long epoch)
    {
        if (!Shuffle) return arange(Count, dtype: ScalarType.Int64);
        using var generator = new Generator(StreamSeed(Seed, epoch, stream: 0));
        return randperm(Count, generator: generator);
    }

    /// <summary>
    /// The batches of <paramref name="epoch"/> from batch <paramref name="startBatch"/> on (to resume mid-epoch): the
    /// batch number and its indices, int64 [B] on the CPU. Each index tensor is owned by the sampler and disposed when
    /// the enumeration moves on, so it is valid only inside the loop body; the permutation is disposed when the loop
    /// ends.
    /// </summary>
    public IEnumerable<(int Batch, Tensor Indices)> Batches(long epoch, int startBatch = 0)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(startBatch);
        // Detached: the caller's dispose scopes open and close around the loop body, not around these tensors.
        var permutation = Permutation(epoch).DetachFromDisposeScope();
        try
        {
            for (int b = startBatch; b < BatchesPerEpoch; b++)
            {
                long start = (long)b * BatchSize;
                using var indices = permutation.narrow(0, start, Math.Min(BatchSize, Count - start)).DetachFromDisposeScope();
                yield return (b, indices);
            }
        }
        finally
        {
            permutation.Dispose();
        }
    }

    /// <summary>
    /// A CPU generator for the random flips of one batch, seeded from (seed, epoch, batch) on a stream separate from
    /// the shuffling, so flips are reproducible and resumable too. The caller disposes it.
    /// </summary>
    public Generator FlipGenerator(long epoch, int batch) =>
        new(StreamSeed(Seed, epoch, stream: 1 + (ulong)batch));

    /// <summary>A 64-bit seed mixed from (seed, epoch, stream) with SplitMix64, so nearby inputs give unrelated
    /// seeds.</summary>
    public static ulong StreamSeed(long seed, long epoch, ulong stream)
    {
        ulong h = SplitMix((ulong)seed);
        h = SplitMix(h ^ (ulong)epoch);
        return SplitMix(h ^ stream);
    }

    private static ulong SplitMix(ulong x)
    {
        x += 0x9E3779B97F4A7C15UL;
        x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9UL;
        x = (x ^ (x >> 27)) * 0x94D049BB133111EBUL;
        return x ^ (x >> 31);
    }
}
