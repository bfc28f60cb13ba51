using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Distributed;
using Ddpm.Models;
using Ddpm.Tests.Training;
using Ddpm.Training;
using static Ddpm.Tests.Distributed.WeightComparison;
using static TorchSharp.torch;

namespace Ddpm.Tests.Distributed;

/// <summary>
/// Data-parallel training with ranks as threads (<see cref="ThreadRanks"/>): the same arithmetic as under mpirun
/// without needing it. The mpirun runs themselves are in <see cref="MpiCliTests"/>.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public class DataParallelTests
{
    private static readonly Device Cpu = new("cpu");
    private static DdpmConfig Config(int batch, long maxSteps, bool flip = false)
    {
        var c = TrainingFixtures.TinyConfig(maxSteps: maxSteps, batchSize: batch, seed: 7);
        return c with { Dataset = c.Dataset with { RandomFlip = flip }, Train = c.Train with { EmaDecay = 0.9 } };
    }

    private sealed record Run(float[] Weights, float[] Ema, List<float> Losses, long Step);

    private static Run Train(DdpmConfig config, ImageDataset data, DataParallel? parallel, Func<StepReport, bool>? stopAfter = null)
    {
        using var trainer = Create(config, new TrainerOptions { Parallel = parallel });
        var losses = new List<float>();
        using var cancel = new CancellationTokenSource();
        while (!trainer.Finished && !trainer.Stopped)
            trainer.TrainEpoch(data, s =>
            {
                losses.Add(s.Loss);
                if (stopAfter?.Invoke(s) == true) cancel.Cancel();
            }, cancel.Token);
        return new Run(Flat(trainer.Model), Flat(trainer.Ema!.Shadow), losses, trainer.Step);
    }

    [Theory]
    [InlineData(40, 4, 7)]  // 5 global batches of 8 per epoch: 7 steps cross an epoch boundary
    [InlineData(9, 4, 4)]   // a last global batch of 1 image: rank 0's part of it is empty
    public void Two_ranks_with_batch_B_train_like_one_process_with_batch_2B_and_stay_bit_identical(int images, int batch, long steps)
    {
        using var data = SyntheticImages.Create(images, 1, 8, seed: 4);
        var single = Train(Config(2 * batch, steps, flip: true), data, null);
        var ranks = ThreadRanks.Run(2, comm =>
        {
            using var parallel = new DataParallel(comm, checkEvery: 1);
            return Train(Config(batch, steps, flip: true), data, parallel);
        });

        Assert.Equal(steps, single.Step);
        Assert.All(ranks, r => Assert.Equal(steps, r.Step));
        // Every rank took the same steps from the same reduced numbers: bit-identical weights, EMA and reported losses.
        Assert.Equal(ranks[0].Weights, ranks[1].Weights);
        Assert.Equal(ranks[0].Ema, ranks[1].Ema);
        Assert.Equal(ranks[0].Losses, ranks[1].Losses);
        // One process with the union batch: the same draws and batches, the gradient summed in another order, so equal
        // to rounding: every step's loss, and the weights wherever the gradient is not identically zero
        // (WeightComparison.Live; measured: those 275 of 74,217 excluded 4e-8 / 1.2e-7 relative, all weights 7e-5 /
        // 9e-5).
        Assert.Equal(single.Losses.Count, ranks[0].Losses.Count);
        for (int i = 0; i < single.Losses.Count; i++)
            Assert.True(Math.Abs(single.Losses[i] - ranks[0].Losses[i]) <= 1e-6 * Math.Abs(single.Losses[i]),
                $"step {i + 1}: global loss {ranks[0].Losses[i]} vs one process {single.Losses[i]}");
        double rel = RelativeDifference(ranks[0].Weights, single.Weights, Live(Config(2 * batch, steps), data));
        Assert.True(rel <= 1e-6, $"weights of 2 ranks × batch {batch} differ from one process × batch {2 * batch} by {rel:E2} (relative)");
    }

    [Fact]
    public void Ranks_whose_weights_differ_stop_with_an_error_naming_the_step_and_the_checksums()
    {
        using var data = SyntheticImages.Create(40, 1, 8, seed: 4);
        var error = Assert.Throws<AggregateException>(() => ThreadRanks.Run(2, comm =>
        {
            using var parallel = new DataParallel(comm, checkEvery: 2);
            using var trainer = Create(Config(4, 6), new TrainerOptions { Parallel = parallel });
            if (comm.Rank == 1)
                using (no_grad())
                    trainer.Model.parameters().First().view(-1)[0].add_(1e-3f); // a rank whose weights drifted
            trainer.TrainEpoch(data);
            return trainer.Step;
        }));
        var messages = error.InnerExceptions.Select(e => e.Message).ToArray();
        Assert.Equal(2, messages.Length); // both ranks stop, neither waits for the other
        Assert.All(messages, m => Assert.Contains("the weights differ across ranks after step 0 (rank 0: ", m));
    }

    [Fact]
    public void A_stop_on_one_rank_stops_every_rank_before_the_same_step()
    {
        using var data = SyntheticImages.Create(40, 1, 8, seed: 4);
        var steps = ThreadRanks.Run(2, comm =>
        {
            using var parallel = new DataParallel(comm);
            // Only rank 1 is told to stop (as if it alone got SIGTERM), after step 3.
            return Train(Config(4, 20), data, parallel, s => comm.Rank == 1 && s.Step == 3).Step;
        });
        Assert.Equal(new long[] { 3, 3 }, steps);
    }

    [Fact]
    public void A_checkpoint_resumes_only_under_the_number_of_processes_that_wrote_it()
    {
        var dir = TestPaths.TempDir("dp-resume");
        try
        {
            using var data = SyntheticImages.Create(40, 1, 8, seed: 4);
            var two = Path.Combine(dir, "two.ckpt");
            ThreadRanks.Run(2, comm =>
            {
                using var parallel = new DataParallel(comm);
                using var trainer = Create(Config(4, 2), new TrainerOptions { Parallel = parallel });
                trainer.TrainEpoch(data);
                if (parallel.IsRoot) trainer.Save(two);
                return 0;
            });
            Assert.Equal(2, Checkpoint.ReadManifest(two).WorldSize);
            var refused = Assert.Throws<CheckpointException>(() => Trainer.Resume(two, Cpu));
            Assert.Contains("was written by a run over 2 process(es) and this run has 1; resume it with the same number (mpirun -n 2)", refused.Message);

            var one = Path.Combine(dir, "one.ckpt");
            using (var trainer = Trainer.Create(Config(8, 2), Cpu))
            {
                trainer.TrainEpoch(data);
                trainer.Save(one);
            }
            Assert.Equal(1, Checkpoint.ReadManifest(one).WorldSize);
            var errors = ThreadRanks.Run(2, comm =>
            {
                using var parallel = new DataParallel(comm);
                return Assert.Throws<CheckpointException>(() => Trainer.Resume(one, Cpu, options: new TrainerOptions { Parallel = parallel })).Message;
            });
            Assert.All(errors, m => Assert.Contains("over 1 process(es) and this run has 2; resume it with the same number (mpirun -n 1, or without mpirun)", m));

            // The same number resumes.
            var resumed = ThreadRanks.Run(2, comm =>
            {
                using var parallel = new DataParallel(comm);
                using var trainer = Trainer.Resume(two, Cpu, c => c with { Train = c.Train with { MaxSteps = 4 } }, new TrainerOptions { Parallel = parallel });
                trainer.TrainEpoch(data);
                return trainer.Step;
            });
            Assert.Equal(new long[] { 4, 4 }, resumed);
        }
        finally
        {
            Directory.Delete(dir, recursive: true);
        }
    }

    [Fact]
    public void NCCL_is_off_unless_DDPM_NCCL_is_1_and_other_values_are_refused()
    {
        var before = Environment.GetEnvironmentVariable(NcclAllReduce.EnableVariable);
        try
        {
            Environment.SetEnvironmentVariable(NcclAllReduce.EnableVariable, null);
            Assert.False(NcclAllReduce.Wanted);
            Environment.SetEnvironmentVariable(NcclAllReduce.EnableVariable, "0");
            Assert.False(NcclAllReduce.Wanted);
            Environment.SetEnvironmentVariable(NcclAllReduce.EnableVariable, "1");
            Assert.True(NcclAllReduce.Wanted);
            Environment.SetEnvironmentVariable(NcclAllReduce.EnableVariable, "yes");
            Assert.Equal("DDPM_NCCL: expected 0 or 1, got 'yes'", Assert.Throws<ArgumentException>(() => NcclAllReduce.Wanted).Message);
        }
        finally
        {
            Environment.SetEnvironmentVariable(NcclAllReduce.EnableVariable, before);
        }
    }
}
