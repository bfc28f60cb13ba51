using Ddpm.Distributed;
using static TorchSharp.torch;

namespace Ddpm.Tests.Distributed;

public class ShardAndLaunchTests
{
    [Theory]
    [InlineData(16, 2)]
    [InlineData(17, 4)]
    [InlineData(3, 8)]
    [InlineData(0, 3)]
    public void The_parts_of_all_ranks_cover_every_item_once_in_rank_order_and_differ_by_at_most_one(long total, int size)
    {
        var parts = Enumerable.Range(0, size).Select(r => Shard.Of(total, r, size)).ToArray();
        long next = 0;
        foreach (var p in parts)
        {
            Assert.Equal(next, p.Offset);
            Assert.Equal(total, p.Total);
            next += p.Count;
        }
        Assert.Equal(total, next);
        Assert.True(parts.Max(p => p.Count) - parts.Min(p => p.Count) <= 1);
    }

    [Fact]
    public void A_full_global_batch_gives_every_rank_exactly_its_batch_size()
    {
        for (int r = 0; r < 8; r++) Assert.Equal(new Shard(64L * r, 64, 512), Shard.Of(512, r, 8));
        Assert.Equal(0.125, Shard.Of(512, 3, 8).Fraction);
    }

    [Fact]
    public void A_part_of_a_tensor_is_its_rows_in_the_part()
    {
        using var all = arange(10L);
        using var rows = Shard.Of(10, 1, 3).Of(all);
        Assert.Equal(new long[] { 3, 4, 5 }, rows.data<long>().ToArray());
        Assert.Throws<ArgumentException>(() => Shard.Of(9, 1, 3).Of(all));
        Assert.Throws<ArgumentOutOfRangeException>(() => Shard.Of(10, 3, 3));
    }

    private static Func<string, string?> Env(params (string Name, string Value)[] vars) =>
        name => vars.FirstOrDefault(v => v.Name == name).Value;

    [Fact]
    public void A_process_not_started_by_mpirun_is_a_single_process()
    {
        Assert.Null(MpiLaunch.Detect(Env()));
        Assert.Null(MpiLaunch.Detect(Env(("PMI_SIZE", "1"))));
    }

    [Fact]
    public void Open_MPI_launch_variables_give_rank_size_and_local_placement()
    {
        var launch = MpiLaunch.Detect(Env(("OMPI_COMM_WORLD_SIZE", "4"), ("OMPI_COMM_WORLD_RANK", "3"),
            ("OMPI_COMM_WORLD_LOCAL_RANK", "1"), ("OMPI_COMM_WORLD_LOCAL_SIZE", "2")));
        Assert.Equal(new MpiLaunch(3, 4, 1, 2), launch);
        // Threads per rank: the cores this process may use, shared by the ranks on its machine.
        Assert.Equal(8, launch!.ThreadsPerRank(16));
        Assert.Equal(1, launch.ThreadsPerRank(1));
    }

    [Fact]
    public void Another_MPI_or_malformed_launch_variables_are_one_clear_error()
    {
        var other = Assert.Throws<DistributedException>(() => MpiLaunch.Detect(Env(("PMI_SIZE", "2"))));
        Assert.Contains("Open MPI", other.Message);
        var bad = Assert.Throws<DistributedException>(() => MpiLaunch.Detect(Env(("OMPI_COMM_WORLD_SIZE", "two"), ("OMPI_COMM_WORLD_RANK", "0"))));
        Assert.Contains("OMPI_COMM_WORLD_SIZE='two'", bad.Message);
        var beyond = Assert.Throws<DistributedException>(() => MpiLaunch.Detect(Env(("OMPI_COMM_WORLD_SIZE", "2"), ("OMPI_COMM_WORLD_RANK", "2"))));
        Assert.Contains("not below", beyond.Message);
    }

    [Fact]
    public void The_weight_checksum_changes_with_any_single_bit()
    {
        using var w = randn(1001, generator: new Generator(3));
        ulong sum = WeightChecksum.Of(w);
        Assert.Equal(sum, WeightChecksum.Of(w.clone()));
        foreach (long i in new long[] { 0, 500, 1000 })
        {
            using var changed = w.clone();
            float v = changed[i].item<float>();
            int bits = BitConverter.SingleToInt32Bits(v) ^ 1; // the lowest mantissa bit
            changed[i] = tensor(BitConverter.Int32BitsToSingle(bits));
            Assert.NotEqual(sum, WeightChecksum.Of(changed));
        }
        using var view = w.narrow(0, 1, 1000); // views of a larger buffer are checked from their own first element
        Assert.Equal(WeightChecksum.Of(view.clone()), WeightChecksum.Of(view));
    }
}
