using Ddpm.Data;
using TorchSharp;
using Xunit;
using static TorchSharp.torch;

namespace Ddpm.Tests.Data;

public sealed class BatchSamplerTests
{
    private static long[][] Epoch(BatchSampler sampler, long epoch, int start = 0) =>
        sampler.Batches(epoch, start).Select(b => b.Indices.data<long>().ToArray()).ToArray();

    [Fact]
    public void The_same_seed_and_epoch_give_the_same_order_and_other_epochs_or_seeds_do_not()
    {
        var sampler = new BatchSampler(count: 100, batchSize: 32, seed: 7);

        var a = Epoch(sampler, 3);
        var again = Epoch(new BatchSampler(100, 32, 7), 3);
        var next = Epoch(sampler, 4);
        var otherSeed = Epoch(new BatchSampler(100, 32, 8), 3);

        Assert.Equal(a, again);
        Assert.NotEqual(a.SelectMany(x => x), next.SelectMany(x => x));
        Assert.NotEqual(a.SelectMany(x => x), otherSeed.SelectMany(x => x));
        Assert.Equal(Enumerable.Range(0, 100).Select(i => (long)i), a.SelectMany(x => x).Order());
        Assert.Equal(Enumerable.Range(0, 100).Select(i => (long)i), next.SelectMany(x => x).Order());
    }

    [Fact]
    public void Batches_have_the_batch_size_and_the_last_partial_batch_is_kept()
    {
        var sampler = new BatchSampler(count: 10, batchSize: 4, seed: 0);

        var batches = sampler.Batches(0).Select(b => (b.Batch, Length: b.Indices.shape[0])).ToList();

        Assert.Equal(3, sampler.BatchesPerEpoch);
        Assert.Equal([(0, 4L), (1, 4L), (2, 2L)], batches);
    }

    [Fact]
    public void Resuming_mid_epoch_yields_the_remaining_batches_of_the_uninterrupted_order()
    {
        var sampler = new BatchSampler(count: 50, batchSize: 8, seed: 123);

        var full = Epoch(sampler, 2);
        var resumed = Epoch(sampler, 2, start: 4);

        Assert.Equal(full[4..], resumed);
        Assert.Equal(3, sampler.Batches(2, 3).First().Batch);
    }

    [Fact]
    public void Without_shuffle_the_stored_order_is_kept()
    {
        var sampler = new BatchSampler(count: 5, batchSize: 2, seed: 1, shuffle: false);

        Assert.Equal([[0L, 1], [2L, 3], [4L]], Epoch(sampler, 9));
    }

    [Fact]
    public void Flip_generators_are_reproducible_per_epoch_and_batch()
    {
        var sampler = new BatchSampler(count: 10, batchSize: 4, seed: 5);
        float[] Draw(long epoch, int batch)
        {
            using var g = sampler.FlipGenerator(epoch, batch);
            using var r = rand(8, generator: g);
            return r.data<float>().ToArray();
        }

        Assert.Equal(Draw(1, 2), Draw(1, 2));
        Assert.NotEqual(Draw(1, 2), Draw(1, 3));
        Assert.NotEqual(Draw(1, 2), Draw(2, 2));
    }

    [Fact]
    public void An_epoch_of_batches_leaves_no_live_tensors_behind()
    {
        using var images = zeros(new long[] { 40, 1, 4, 4 }, ScalarType.Byte);
        using var set = new ImageDataset(images.clone(), null, "zeros");
        var sampler = new BatchSampler(40, 6, seed: 0);
        // Warm-up: the first epoch may create lazily cached tensors inside TorchSharp.
        foreach (var (_, indices) in sampler.Batches(0)) { using var scope = NewDisposeScope(); set.Batch(indices); }
        long before = DisposeScopeManager.Statistics.ThreadTotalLiveCount;

        for (long epoch = 1; epoch <= 3; epoch++)
            foreach (var (batch, indices) in sampler.Batches(epoch))
            {
                using var scope = NewDisposeScope();
                using var flip = sampler.FlipGenerator(epoch, batch);
                var x = set.Batch(indices, null, flip);
                Assert.Equal(batch == 6 ? 4 : 6, x.shape[0]);
            }

        Assert.Equal(before, DisposeScopeManager.Statistics.ThreadTotalLiveCount);
    }
}
