using Ddpm.Diffusion;
using Ddpm.Distributed;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Tests.Models;
using static TorchSharp.torch;

namespace Ddpm.Tests.Distributed;

/// <summary>Sampling split by image index over ranks (threads here, processes in <see cref="MpiCliTests"/>) against one
/// process.</summary>
[Collection(GlobalRngCollection.Name)]
public class ShardedGenerationTests
{
    private static readonly NoiseSchedule Schedule = NoiseSchedule.Linear(10, 1e-4, 0.2);

    /// <summary>
    /// The ranks' images, gathered on rank 0, are one process's bit for bit when the batches have the same shapes:
    /// 8 images in batches of 2 over 2 ranks ([0,4) and [4,8)); 3 images one at a time over 4 ranks, where rank 0's
    /// part is empty. A class-conditional model with guidance checks that each rank gets its images' labels.
    /// </summary>
    [Theory]
    [InlineData(8, 2, 2)]
    [InlineData(3, 4, 1)]
    public void Ranks_together_make_one_process_images_bit_for_bit(int count, int ranks, int batch)
    {
        using var scope = NewDisposeScope();
        using var model = new UNet(TestModels.Tiny(8) with { NumClasses = 3 });
        var request = new GenerationRequest
        {
            Count = count, Seed = 5, MaxBatchSize = batch, Guidance = 1.0,
            Labels = Enumerable.Range(0, count).Select(i => i % 3).ToArray(),
        };
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        using var single = generator.Generate(request);

        // One copy of the model per rank: no module is shared between threads.
        var state = model.state_dict();
        var copies = Enumerable.Range(0, ranks).Select(_ =>
        {
            var copy = new UNet(model.Options);
            copy.load_state_dict(state);
            return copy;
        }).ToArray();
        var results = ThreadRanks.Run(ranks, comm =>
        {
            using var g = new ImageGenerator(copies[comm.Rank], new GaussianDiffusion(Schedule));
            var r = ShardedGeneration.Generate(g, request, comm);
            return (r.Images.detach().clone(), r.FirstIndex);
        });
        foreach (var c in copies) c.Dispose();

        var (gathered, first) = results[0];
        Assert.Equal(0, first);
        Assert.Equal(single.Images.shape, gathered.shape);
        Assert.True(gathered.eq(single.Images).all().item<bool>(),
            $"gathered images differ from one process's by {(gathered - single.Images).abs().max().item<float>()}");
        // The other ranks keep their own part only.
        for (int r = 1; r < ranks; r++)
        {
            var part = Shard.Of(count, r, ranks);
            Assert.Equal(part.Offset, results[r].FirstIndex);
            Assert.Equal(part.Count, results[r].Item1.shape[0]);
            Assert.True(results[r].Item1.eq(single.Images.narrow(0, part.Offset, part.Count)).all().item<bool>());
        }
    }

    [Fact]
    public void A_part_covers_its_index_range_and_labels_and_an_empty_one_is_null()
    {
        var request = new GenerationRequest { Count = 5, FirstIndex = 10, Labels = [0, 1, 2, 3, 4] };
        var part = ShardedGeneration.PartOf(request, Shard.Of(5, 1, 2))!;
        Assert.Equal(12, part.FirstIndex);
        Assert.Equal(3, part.Count);
        Assert.Equal([2, 3, 4], part.Labels);
        Assert.Null(ShardedGeneration.PartOf(request with { Count = 1, Labels = [0] }, Shard.Of(1, 0, 2)));
        Assert.Throws<ArgumentException>(() => ShardedGeneration.PartOf(request, Shard.Of(4, 0, 2)));
    }
}
