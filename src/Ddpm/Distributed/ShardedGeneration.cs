using Ddpm.Sampling;
using static TorchSharp.torch;

namespace Ddpm.Distributed;

/// <summary>
/// One <see cref="GenerationRequest"/> split over the ranks of a communicator by image index: rank r of R makes images
/// [⌊N·r/R⌋, ⌊N·(r+1)/R⌋) (<see cref="Shard"/>) of the same seed's sequence, and rank 0 gathers them in index order.
/// Image i depends only on (seed, i) (<see cref="ImageNoise"/>), so the ranks together make the images of one process:
/// bit for bit where the ranks' batches have the shapes one process's would, otherwise to float32 rounding (libtorch's
/// CPU kernels block their sums by batch size).
/// </summary>
public static class ShardedGeneration
{
    /// <summary>The part of <paramref name="request"/> that <paramref name="part"/> covers (its labels sliced alike),
    /// or null when it is empty.</summary>
    public static GenerationRequest? PartOf(GenerationRequest request, Shard part)
    {
        if (part.Total != request.Count) throw new ArgumentException($"the part is of {part.Total} images, the request of {request.Count}", nameof(part));
        if (part.Count == 0) return null;
        return request with
        {
            FirstIndex = request.FirstIndex + part.Offset,
            Count = (int)part.Count,
            Labels = request.Labels?.Skip((int)part.Offset).Take((int)part.Count).ToArray(),
        };
    }

    /// <summary>
    /// Generates this rank's part of <paramref name="request"/> (collective: every rank calls it with the same request)
    /// and gathers every part on rank 0. Returns rank 0's result with all <see cref="GenerationRequest.Count"/> images
    /// (float32 [N, C, H, W] on the CPU, in index order) and this rank's own timings; elsewhere the result holds only
    /// this rank's images. <paramref name="onStep"/> sees this rank's batches (indices are image indices of the whole
    /// request).
    /// </summary>
    public static GenerationResult Generate(ImageGenerator generator, GenerationRequest request, ICommunicator communicator,
        Action<GenerationStep>? onStep = null, CancellationToken cancel = default)
    {
        var part = Shard.Of(request.Count, communicator.Rank, communicator.Size);
        var mine = PartOf(request, part);
        using var local = mine is null
            ? new GenerationResult(empty([0, .. generator.ImageShape], float32), request.FirstIndex + part.Offset, [], new GenerationTimings(0, []))
            : generator.Generate(mine, onStep, cancel);
        using var contiguous = local.Images.contiguous();
        var all = communicator.Gather(contiguous, root: 0);
        return local with { Images = all ?? contiguous.clone(), FirstIndex = all is null ? local.FirstIndex : request.FirstIndex };
    }
}
