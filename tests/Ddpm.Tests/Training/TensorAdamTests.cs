using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Models;
using Ddpm.Tests.Models;
using Ddpm.Training;
using TorchSharp;
using TorchSharp.Modules;
using static TorchSharp.torch;

namespace Ddpm.Tests.Training;

/// <summary>
/// The device-scalar Adam and EMA behind a captured training step equal the flat optimizer bit for bit on the CPU:
/// the bias corrections are computed in float64 and rounded to float32 exactly where FlatAdam's host scalars are,
/// and addcdiv's θ + (s·m)/denom is the same three roundings as the tensor version.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public class TensorAdamTests
{
    private static bool Same(Tensor a, Tensor b) => a.eq(b).all().item<bool>();

    /// <summary>The tiny U-Net from a fixed seed with a flat Adam and an EMA over it.</summary>
    private sealed record Replica(UNet Model, FlatAdam Adam, ExponentialMovingAverage Ema) : IDisposable
    {
        public static Replica Create(double lr, double decay = 0.9)
        {
            manual_seed(5);
            var model = new UNet(TestModels.Tiny(8));
            return new Replica(model, new FlatAdam(model.parameters(), lr), new ExponentialMovingAverage(model, decay));
        }

        public void Dispose()
        {
            Ema.Dispose();
            Adam.Dispose();
            Model.Dispose();
        }
    }

    [Fact]
    public void Two_hundred_steps_with_non_finite_ones_match_the_flat_Adam_and_EMA_bit_for_bit()
    {
        using var a = Replica.Create(3e-3, 0.99);
        using var b = Replica.Create(3e-3, 0.99);
        using var tensorAdam = new TensorAdam(b.Adam);
        using var deviceEma = new DeviceEma(b.Ema, steps: 0);
        using var yes = tensor(true);
        var generator = new TorchSharp.torch.Generator(11);
        long n = a.Adam.Weights.numel();
        var bad = new HashSet<int> { 0, 4, 77, 150, 199 }; // the very first step too: t must stay 0 after it
        int applied = 0;
        for (int step = 0; step < 200; step++)
        {
            using var scope = NewDisposeScope();
            var g = randn(n, generator: generator) * (0.1 + step % 7);
            if (bad.Contains(step)) g[step % n] = step % 2 == 0 ? float.NaN : float.PositiveInfinity;
            var finite = g.isfinite().all();
            // The reference: the trainer's CPU path decides on the host and updates in place.
            if (finite.item<bool>())
            {
                a.Adam.Step(g);
                a.Ema.Update(a.Adam.Weights, step);
                applied++;
            }
            tensorAdam.Step(g, finite);
            deviceEma.Update(b.Adam.Weights, finite, yes);
            if (step % 50 == 49 || bad.Contains(step))
            {
                Assert.True(Same(a.Adam.Weights, b.Adam.Weights), $"weights differ after step {step}");
                Assert.True(Same(a.Adam.ExpAvg, b.Adam.ExpAvg), $"m differs after step {step}");
                Assert.True(Same(a.Adam.ExpAvgSq, b.Adam.ExpAvgSq), $"v differs after step {step}");
                Assert.True(Same(a.Ema.Flat, b.Ema.Flat), $"EMA differs after step {step}");
            }
        }
        Assert.Equal(195, applied);
        Assert.Equal(applied, tensorAdam.ReadUpdates());
        Assert.Equal(200, deviceEma.ReadSteps());
        tensorAdam.WriteBack();
        Assert.Equal(a.Adam.Updates, b.Adam.Updates);
        Assert.All(b.Adam.Optimizer.state_dict().State.Cast<Adam.State>(), s => Assert.Equal(195, s.step));
        // Not vacuous: the weights moved and the EMA lags them.
        using var initial = Replica.Create(3e-3);
        Assert.False(Same(a.Adam.Weights, initial.Adam.Weights));
        Assert.False(Same(a.Ema.Flat, a.Adam.Weights));
    }

    [Fact]
    public void A_step_whose_flag_is_false_changes_nothing_at_all()
    {
        // What the masked warm-ups before a capture rely on.
        using var r = Replica.Create(1e-2);
        using var adam = new TensorAdam(r.Adam);
        using var deviceEma = new DeviceEma(r.Ema, steps: 3);
        using var no = tensor(false);
        using var g = randn(r.Adam.Weights.numel());
        adam.Step(g, tensor(true));
        deviceEma.Update(r.Adam.Weights, tensor(true), tensor(true));
        using var weights = r.Adam.Weights.clone();
        using var m = r.Adam.ExpAvg.clone();
        using var v = r.Adam.ExpAvgSq.clone();
        using var average = r.Ema.Flat.clone();

        adam.Step(g * 3, no);
        deviceEma.Update(r.Adam.Weights * 2, no, no);

        Assert.True(Same(weights, r.Adam.Weights) && Same(m, r.Adam.ExpAvg) && Same(v, r.Adam.ExpAvgSq) && Same(average, r.Ema.Flat));
        Assert.Equal(1, adam.ReadUpdates());
        Assert.Equal(4, deviceEma.ReadSteps());
    }

    [Fact]
    public void A_new_learning_rate_reaches_the_device_only_through_SyncLearningRate()
    {
        using var reference = Replica.Create(1e-3);
        using var stale = Replica.Create(1e-3);
        using var synced = Replica.Create(1e-3);
        using var staleAdam = new TensorAdam(stale.Adam);
        using var syncedAdam = new TensorAdam(synced.Adam);
        using var g = randn(reference.Adam.Weights.numel());
        foreach (var r in new[] { reference, stale, synced }) r.Adam.Options.LearningRate = 5e-2;
        syncedAdam.SyncLearningRate();
        reference.Adam.Step(g);
        staleAdam.Step(g, tensor(true)); // still 1e-3 on the device
        syncedAdam.Step(g, tensor(true));
        Assert.False(Same(reference.Adam.Weights, stale.Adam.Weights));
        Assert.True(Same(reference.Adam.Weights, synced.Adam.Weights));
    }
}

/// <summary>
/// The graphed training step without a graph (the CPU path, and the body a graph records) trains exactly like the
/// trainer's own step: same draws, losses, weights, Adam moments, EMA and step count, skipped steps included.
/// </summary>
[Collection(GlobalRngCollection.Name)]
public class GraphedTrainingStepTests
{
    private static readonly Device Cpu = new("cpu");

    private static bool Same(Tensor a, Tensor b) => a.eq(b).all().item<bool>();

    private static DdpmConfig Config(Precision precision)
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: 8, seed: 21);
        return config with { Train = config.Train with { EmaDecay = 0.95, OnNonFinite = NonFiniteAction.Skip, Precision = precision } };
    }

    internal static void AssertSameState(Trainer reference, Trainer graphed)
    {
        Assert.Equal(reference.Flat.Updates, graphed.Flat.Updates);
        Assert.True(Same(reference.Flat.Weights, graphed.Flat.Weights), "weights differ");
        Assert.True(Same(reference.Flat.ExpAvg, graphed.Flat.ExpAvg), "Adam's m differs");
        Assert.True(Same(reference.Flat.ExpAvgSq, graphed.Flat.ExpAvgSq), "Adam's v differs");
        Assert.True(Same(reference.Ema!.Flat, graphed.Ema!.Flat), "the EMA differs");
        if (reference.Flat.ComputeWeights is { } compute) Assert.True(Same(compute, graphed.Flat.ComputeWeights!), "the bf16 copy differs");
    }

    [Theory]
    [InlineData(Precision.Fp32)]
    [InlineData(Precision.Bf16)]
    public void Its_eager_step_gives_the_trainers_losses_and_state_over_an_epoch(Precision precision)
    {
        var config = Config(precision);
        using var data = SyntheticImages.Create(64, 1, 8, seed: 22);
        using var reference = Trainer.Create(config, Cpu);
        using var graphedTrainer = Trainer.Create(config, Cpu);
        using var step = GraphedTrainingStep.For(graphedTrainer);
        Assert.False(step.UsesGraphs);
        Assert.Equal("eager (device is cpu)", step.Description);

        var expected = new List<float>();
        reference.TrainEpoch(data, s => expected.Add(s.Loss));
        var losses = new List<float>();
        foreach (var (_, indices) in new BatchSampler(data.Count, config.Train.BatchSize, config.Train.Seed).Batches(1))
        {
            using var scope = NewDisposeScope();
            var (loss, applied) = step.Run(data.Batch(indices, Cpu, null));
            Assert.True(applied.item<bool>());
            losses.Add(loss.item<float>());
        }
        Assert.Equal(8, expected.Count);
        Assert.Equal(expected, losses);
        step.WriteBack();
        AssertSameState(reference, graphedTrainer);
        using var untrained = Trainer.Create(config, Cpu);
        Assert.False(Same(untrained.Flat.Weights, graphedTrainer.Flat.Weights), "the weights did not move: the comparison would be vacuous");
    }

    [Fact]
    public void The_first_replay_check_compares_updates_not_states()
    {
        using var scope = NewDisposeScope();
        var g = new Generator(5);
        var before = (randn([100_000], generator: g) * 0.05f).to(float32);
        var update = sign(randn([100_000], generator: g)) * 2e-4f; // Adam's first step: ±lr everywhere
        var eager = before + update;
        var step = (tensor(0.25f), tensor(true));
        bool Check(Tensor graphAfter, (Tensor, Tensor)? graphStep, out string difference) =>
            GraphedTrainingStep.StepsAgree(graphStep ?? step, step, [before], [graphAfter], [eager], 1e-2, out difference);

        // Bit-equal, and rounded differently by 1e-9 everywhere: agree.
        Assert.True(Check(eager.clone(), null, out var difference), difference);
        Assert.True(Check(eager + 1e-9f * randn([100_000], generator: g), null, out difference), difference);
        // A step that did nothing: every weight within 2e-4 of the eager one (an elementwise 1e-3 bound would pass it).
        Assert.False(Check(before.clone(), null, out difference));
        Assert.StartsWith("‖Δ_graph − Δ_eager‖ = ", difference);
        // A step on other inputs: other signs.
        Assert.False(Check(before - update, null, out _));
        // Flipped signs (near-zero gradients rounded the other way): one in 100,000 passes (‖Δ‖ ratio 2/√100,000 ≈
        // 0.006), ten do not (0.02).
        var flipped = eager.clone();
        flipped[0] = before[0] - update[0];
        Assert.True(Check(flipped, null, out difference), difference);
        flipped[TensorIndex.Slice(0, 10)] = before[TensorIndex.Slice(0, 10)] - update[TensorIndex.Slice(0, 10)];
        Assert.False(Check(flipped, null, out _));
        // The loss and the applied flag.
        Assert.False(Check(eager.clone(), (tensor(0.26f), tensor(true)), out difference));
        Assert.Equal("loss 0.26 instead of 0.25", difference);
        Assert.False(Check(eager.clone(), (tensor(0.25f), tensor(false)), out difference));
        Assert.Equal("update applied: False instead of True", difference);
        var skipped = (tensor(float.NaN), tensor(false));
        Assert.True(GraphedTrainingStep.StepsAgree(skipped, skipped, [before], [before], [before], 1e-2, out difference), difference);
    }

    [Fact]
    public void Non_finite_steps_are_skipped_like_the_trainer_skips_them()
    {
        var config = Config(Precision.Fp32);
        using var data = SyntheticImages.Create(64, 1, 8, seed: 23);
        using var reference = Trainer.Create(config, Cpu);
        using var graphedTrainer = Trainer.Create(config, Cpu);
        using var step = GraphedTrainingStep.For(graphedTrainer);
        for (int i = 0; i < 12; i++)
        {
            using var scope = NewDisposeScope();
            var x0 = data.Batch(arange(i % 8 * 8, i % 8 * 8 + 8, dtype: int64), Cpu, null);
            bool bad = i is 0 or 5 or 6;
            if (bad) x0[0, 0, 0, 0] = float.NaN;
            float expected = 0;
            reference.TrainBatch(x0, onStep: r => expected = r.Loss); // read at once on the CPU
            var (loss, applied) = step.Run(x0);
            Assert.Equal(!bad, applied.item<bool>());
            Assert.Equal(expected, loss.item<float>()); // NaN equals NaN here
            Assert.Equal(!bad, float.IsFinite(expected));
        }
        Assert.Equal(3, reference.SkippedSteps);
        step.WriteBack();
        Assert.Equal(9, graphedTrainer.Flat.Updates);
        AssertSameState(reference, graphedTrainer);
    }
}
