using Ddpm.Configuration;
using Ddpm.Evaluation;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Tests.Data;
using Ddpm.Tests.Evaluation;
using Ddpm.Tests.Models;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Distributed;

/// <summary><c>ddpm eval</c>'s sampling split over ranks (threads): rank 0 measures the images one process
/// would.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class ShardedEvaluationTests : IDisposable
{
    private readonly TempFolder _folder = new();

    public void Dispose() => _folder.Dispose();

    [Fact]
    public void Two_ranks_sample_what_one_process_samples_and_rank_0_measures_it()
    {
        using var scope = NewDisposeScope();
        var config = new DdpmConfig
        {
            Diffusion = new DiffusionOptions { NumTimesteps = 10, BetaEnd = 0.2 },
            Model = TestModels.Tiny(28) with { NumHeads = 1 }, // one head: attention at 28×28 dominates the cost
        }.Validate();
        var path = _folder.File("tiny.ckpt");
        using (var model = new UNet(config.Model)) Checkpoint.Save(path, model, config, epoch: 1, step: 1);
        // 90 images in batches of 45: the ranks' parts [0,45) and [45,90) are one process's batches, so bit for bit.
        var options = new EvaluationOptions
        {
            Checkpoint = path, Num = 90, BatchSize = 45, Seed = 2, Nll = NllMethod.None,
            Sampler = new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 1 },
        };
        using var reference = EvaluatorTests.Reference();
        EvaluationResult single;
        using (var evaluator = Evaluator.Open(options)) single = evaluator.Run(reference);
        using (single)
        {
            var results = ThreadRanks.Run(2, comm =>
            {
                using var evaluator = Evaluator.Open(options, comm);
                if (comm.Rank > 0)
                {
                    Assert.Throws<InvalidOperationException>(() => evaluator.Run(reference));
                    evaluator.SamplePart();
                    return null;
                }
                return evaluator.Run(reference);
            });
            using var sharded = results[0]!;
            Assert.Null(results[1]);
            Assert.True(sharded.Images.eq(single.Images).all().item<bool>(),
                $"the 2-rank samples differ from one process's by {(sharded.Images - single.Images).abs().max().item<float>()}");
            Assert.Equal(single.Report.Quality!.FrechetDistance, sharded.Report.Quality!.FrechetDistance);
            Assert.Equal(single.Report.Quality.ClassHistogram, sharded.Report.Quality.ClassHistogram);
        }
    }
}
