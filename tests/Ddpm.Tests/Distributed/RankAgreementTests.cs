using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Distributed;
using Ddpm.Tests.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Distributed;

/// <summary><see cref="RankAgreement"/> with ranks as threads, and the MPI deadline's setting (issue 25).</summary>
public sealed class RankAgreementTests
{
    private static ImageDataset Data(int count, int seed)
    {
        var generator = new Generator().manual_seed(seed);
        var images = randint(0, 256, [count, 1, 8, 8], generator: generator).to(ScalarType.Byte); // the data set owns it
        return new ImageDataset(images, null, $"{count} random images");
    }

    private static Exception?[] Check(Func<int, ImageDataset> data, Func<int, DdpmConfig> config) =>
        ThreadRanks.Run(2, ranks =>
        {
            using var d = data(ranks.Rank);
            try
            {
                RankAgreement.Check(ranks, d, config(ranks.Rank));
                return (Exception?)null;
            }
            catch (DistributedException e) { return e; }
        });

    [Fact]
    public void Ranks_with_the_same_data_and_config_agree_and_any_difference_is_named_on_every_rank()
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: 1, batchSize: 4, seed: 1);
        Assert.All(Check(_ => Data(16, 1), _ => config), Assert.Null);

        var size = Check(r => Data(r == 0 ? 16 : 20, 1), _ => config);
        Assert.All(size, e => Assert.Contains("rank 1 differs from rank 0 in the number of training images (rank 0: 16, rank 1: 20)", e!.Message));
        var content = Check(r => Data(16, r == 0 ? 1 : 2), _ => config);
        Assert.All(content, e => Assert.Contains("rank 1 differs from rank 0 in a checksum of the training images", e!.Message));
        Assert.All(content, e => Assert.DoesNotContain("number of training images", e!.Message));
        var other = Check(_ => Data(16, 1), r => r == 0 ? config : config with { Train = config.Train with { BatchSize = 8 } });
        Assert.All(other, e => Assert.Contains("rank 1 differs from rank 0 in the resolved config", e!.Message));
    }

    [Fact]
    public void The_deadline_of_a_collective_comes_from_DDPM_MPI_TIMEOUT()
    {
        Assert.Equal(MpiCommunicator.DefaultTimeout, MpiCommunicator.ParseTimeout(null));
        Assert.Equal(MpiCommunicator.DefaultTimeout, MpiCommunicator.ParseTimeout(" "));
        Assert.Equal(TimeSpan.FromSeconds(2.5), MpiCommunicator.ParseTimeout("2.5"));
        Assert.Null(MpiCommunicator.ParseTimeout("0"));
        foreach (var bad in new[] { "-1", "ten", "NaN", "1e300" })
            Assert.Contains("DDPM_MPI_TIMEOUT must be a number of seconds >= 0", Assert.Throws<DistributedException>(() => MpiCommunicator.ParseTimeout(bad)).Message);
    }
}
