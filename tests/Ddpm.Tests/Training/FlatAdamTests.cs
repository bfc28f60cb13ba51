using Ddpm.Data;
using Ddpm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Training;

[Collection(GlobalRngCollection.Name)]
public class FlatAdamTests
{
    private static readonly Device Cpu = new("cpu");

    private static double MaxAbsDiff(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Flat_Adam_trains_to_the_same_weights_and_EMA_as_TorchSharps_per_tensor_Adam(bool maskOnDevice)
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: 12, seed: 3);
        config = config with { Train = config.Train with { EmaDecay = 0.9 } };
        using var data = SyntheticImages.Create(40, 1, 8, seed: 4);
        using var perTensor = new PerTensorReference(config);
        using var flat = Trainer.Create(config, Cpu, new TrainerOptions { MaskOnDevice = maskOnDevice });
        Assert.Equal(maskOnDevice, flat.MaskOnDevice);
        var lossesA = perTensor.TrainTo(data, 12);
        var lossesB = new List<float>();
        while (!flat.Finished) flat.TrainEpoch(data, s => lossesB.Add(s.Loss));

        Assert.Equal(12, lossesA.Count);
        Assert.Equal(12, lossesB.Count);
        for (int i = 0; i < lossesA.Count; i++) Assert.Equal(lossesA[i], lossesB[i], 1e-5f);
        Assert.NotEqual(lossesB[0], lossesB[^1]); // the comparison would be vacuous if nothing trained
        AssertSameWeights(perTensor.Model, flat.Model, "weights");
        AssertSameWeights(perTensor.Ema!, flat.Ema!.Shadow, "EMA weights");
        double moved = flat.Model.state_dict().Max(kv => MaxAbsDiff(kv.Value, flat.Ema.Shadow.state_dict()[kv.Key]));
        Assert.True(moved > 1e-4, "the EMA did not lag the weights at all: the comparison would be vacuous");
    }

    /// <summary>Same arithmetic per element; only vectorisation (FMA vs separate rounding) may differ in the last
    /// bit.</summary>
    private static void AssertSameWeights(Ddpm.Models.UNet expected, Ddpm.Models.UNet actual, string what)
    {
        var a = expected.state_dict();
        var b = actual.state_dict();
        foreach (var key in a.Keys)
            Assert.True(MaxAbsDiff(a[key], b[key]) <= 1e-6, $"{key}: {what} differ by {MaxAbsDiff(a[key], b[key]):G3}");
    }

    [Fact]
    public void Parameters_become_views_of_the_flat_buffer_in_parameters_order()
    {
        manual_seed(2);
        using var model = new Ddpm.Models.UNet(Ddpm.Tests.Models.TestModels.Tiny(8));
        var parameters = model.parameters().ToArray();
        using var firstValues = parameters[0].detach().clone();
        using var adam = new FlatAdam(parameters, 1e-3);
        Assert.Equal(parameters.Sum(p => p.numel()), adam.Weights.numel());
        Assert.True(adam.Weights.narrow(0, 0, firstValues.numel()).eq(firstValues.reshape(-1)).all().item<bool>(), "values were not kept");
        using (no_grad())
        {
            adam.Weights[0] = tensor(123.0f);
            adam.Weights[-1] = tensor(-7.0f);
        }
        Assert.Equal(123.0f, parameters[0].detach().reshape(-1)[0].item<float>());
        Assert.Equal(-7.0f, parameters[^1].detach().reshape(-1)[-1].item<float>());
        Assert.Equal(-7.0f, model.parameters().Last().detach().reshape(-1)[-1].item<float>());
    }

    [Fact]
    public void A_masked_step_leaves_weights_and_moments_untouched_and_Unapply_restores_the_count()
    {
        manual_seed(1);
        using var model = new Ddpm.Models.UNet(Ddpm.Tests.Models.TestModels.Tiny(8));
        using var adam = new FlatAdam(model.parameters(), 1e-2);
        var x = randn(2, 1, 8, 8);
        var t = tensor(new long[] { 3, 7 });

        model.forward(x, t).square().mean().backward();
        var g = adam.Gradients();
        adam.Step(g, tensor(true));
        adam.ZeroGrad();
        Assert.Equal(1, adam.Updates);
        using var weights = adam.Weights.clone();
        var states = adam.Optimizer.state_dict().State.Cast<TorchSharp.Modules.Adam.State>().ToArray();
        using var m = states[0].exp_avg.clone();

        model.forward(x, t).square().mean().backward();
        adam.Step(adam.Gradients(), tensor(false));
        adam.ZeroGrad();
        Assert.True(adam.Weights.eq(weights).all().item<bool>(), "a masked step changed the weights");
        Assert.True(states[0].exp_avg.eq(m).all().item<bool>(), "a masked step changed Adam's first moment");
        Assert.Equal(2, adam.Updates);
        adam.Unapply(1);
        Assert.Equal(1, adam.Updates);
        Assert.All(states, s => Assert.Equal(1, s.step));
    }

    [Fact]
    public void Reading_losses_every_5_steps_gives_the_same_weights_and_the_same_per_step_reports()
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: 11, seed: 6);
        using var data = SyntheticImages.Create(48, 1, 8, seed: 7);
        using var eager = Trainer.Create(config, Cpu);
        using var windowed = Trainer.Create(config, Cpu, new TrainerOptions { SyncEvery = 5, MaskOnDevice = true }); // as on a GPU
        Assert.Equal(1, eager.SyncEvery); // the CPU's default
        Assert.False(eager.MaskOnDevice);
        var a = new List<StepReport>();
        var b = new List<StepReport>();
        while (!eager.Finished) eager.TrainEpoch(data, a.Add);
        while (!windowed.Finished) windowed.TrainEpoch(data, b.Add);
        Assert.Equal(11, b.Count);
        Assert.Equal(a.Select(r => (r.Epoch, r.Step, r.StepInEpoch, r.Loss)), b.Select(r => (r.Epoch, r.Step, r.StepInEpoch, r.Loss)));
        foreach (var (key, value) in eager.Model.state_dict())
            Assert.True(value.eq(windowed.Model.state_dict()[key]).all().item<bool>(), $"{key} depends on SyncEvery");
        Assert.Throws<ArgumentOutOfRangeException>(() => Trainer.Create(config, Cpu, new TrainerOptions { SyncEvery = 0 }));
    }

    [Fact]
    public void Steps_trained_batch_by_batch_report_to_their_own_callback_when_their_window_is_read()
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: 100, seed: 2);
        using var trainer = Trainer.Create(config, Cpu, new TrainerOptions { SyncEvery = 3, MaskOnDevice = true });
        using var x0 = rand(new long[] { 4, 1, 8, 8 }, generator: new Generator(5)) * 2 - 1;
        var first = new List<long>();
        var second = new List<long>();
        trainer.TrainBatch(x0, onStep: r => first.Add(r.Step));
        trainer.TrainBatch(x0, onStep: r => first.Add(r.Step));
        Assert.Empty(first); // not read yet: the window holds 3 steps
        trainer.TrainBatch(x0, onStep: r => second.Add(r.Step));
        Assert.Equal(new long[] { 1, 2 }, first);
        Assert.Equal(new long[] { 3 }, second);
        trainer.TrainBatch(x0, onStep: r => second.Add(r.Step));
        trainer.Synchronize();
        Assert.Equal(new long[] { 3, 4 }, second);
        Assert.Equal(4, trainer.Step);
    }

    [Fact]
    public void A_checkpoint_of_TorchSharps_per_tensor_Adam_resumes_on_the_trainer_and_the_trainers_resumes_on_it()
    {
        var dir = TestPaths.TempDir("flat-resume");
        try
        {
            using var data = SyntheticImages.Create(24, 1, 8, seed: 8);
            var config = TrainingFixtures.TinyConfig(maxSteps: 6, seed: 9);
            config = config with { Train = config.Train with { EmaDecay = 0.8 } };
            using var straight = Trainer.Create(config, Cpu);
            while (!straight.Finished) straight.TrainEpoch(data);
            Assert.Equal(6, straight.Step);

            // An old checkpoint: 3 steps of TorchSharp's per-tensor Adam (3 batches = 1 epoch, so one epoch boundary
            // too).
            var old = Path.Combine(dir, "per-tensor.ckpt");
            using (var first = new PerTensorReference(config))
            {
                first.TrainTo(data, 3);
                first.Save(old);
            }
            using (var resumed = Trainer.Resume(old, Cpu))
            {
                Assert.Equal((1, 3L, 0L), (resumed.Epoch, resumed.Step, resumed.StepInEpoch));
                while (!resumed.Finished) resumed.TrainEpoch(data);
                AssertSameWeights(straight.Model, resumed.Model, "weights after resuming a per-tensor checkpoint");
                AssertSameWeights(straight.Ema!.Shadow, resumed.Ema!.Shadow, "EMA weights after resuming a per-tensor checkpoint");
            }

            // And the other way: the trainer's checkpoint (its optimizer state is TorchSharp's format) continues on
            // TorchSharp's Adam.
            var flat = Path.Combine(dir, "flat.ckpt");
            using (var first = Trainer.Create(config with { Train = config.Train with { MaxSteps = 4 } }, Cpu))
            {
                while (!first.Finished) first.TrainEpoch(data);
                first.Save(flat);
            }
            using var continued = new PerTensorReference(config, flat);
            Assert.Equal(4, continued.Step);
            continued.TrainTo(data, 6);
            AssertSameWeights(straight.Model, continued.Model, "weights after continuing the trainer's checkpoint on TorchSharp's Adam");
            AssertSameWeights(straight.Ema!.Shadow, continued.Ema!, "EMA weights after continuing the trainer's checkpoint on TorchSharp's Adam");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}

[Collection(GlobalRngCollection.Name)]
public class Bf16TrainingTests
{
    private static readonly Device Cpu = new("cpu");

    private static Ddpm.Configuration.DdpmConfig Bf16Config(long maxSteps)
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: maxSteps, seed: 11);
        return config with { Train = config.Train with { Precision = Ddpm.Configuration.Precision.Bf16 } };
    }

    [Trait(TestCategory.Name, TestCategory.Slow)]
    [Fact]
    public void Bf16_training_keeps_float32_master_weights_lowers_the_loss_and_tracks_the_fp32_run()
    {
        using var data = SyntheticImages.Create(256, 1, 8, seed: 1);
        var config = Bf16Config(60);
        using var bf16 = Trainer.Create(config, Cpu);
        using var fp32 = Trainer.Create(config with { Train = config.Train with { Precision = Ddpm.Configuration.Precision.Fp32 } }, Cpu);
        var losses = new List<float>();
        var reference = new List<float>();
        while (!bf16.Finished) bf16.TrainEpoch(data, s => losses.Add(s.Loss));
        while (!fp32.Finished) fp32.TrainEpoch(data, s => reference.Add(s.Loss));

        Assert.All(bf16.Model.parameters(), p => Assert.Equal(ScalarType.Float32, p.dtype));
        double first = losses.Take(15).Average(), last = losses.TakeLast(15).Average();
        Assert.True(last < 0.6 * first, $"bf16: mean loss of the last 15 steps {last:F4} is not below 0.6 × the first 15's {first:F4}");
        double lastFp32 = reference.TakeLast(15).Average();
        Assert.True(Math.Abs(last - lastFp32) < 0.25 * lastFp32, $"bf16 ends at loss {last:F4}, fp32 at {lastFp32:F4}");
        // The same init: the first loss differs only by bf16 rounding of weights and activations.
        Assert.True(Math.Abs(losses[0] - reference[0]) < 0.05 * reference[0], $"first loss bf16 {losses[0]:F4} vs fp32 {reference[0]:F4}");
    }

    [Fact]
    public void The_bf16_copy_follows_the_master_weights()
    {
        manual_seed(3);
        using var master = new Ddpm.Models.UNet(Ddpm.Tests.Models.TestModels.Tiny(8));
        using var compute = new Ddpm.Models.UNet(Ddpm.Tests.Models.TestModels.Tiny(8));
        compute.to(ScalarType.BFloat16);
        using var adam = new FlatAdam(master.parameters(), 1e-2, compute.parameters());
        Assert.Equal(ScalarType.BFloat16, adam.ComputeWeights!.dtype);
        Assert.True(adam.ComputeWeights.eq(adam.Weights.to(ScalarType.BFloat16)).all().item<bool>(), "the copy does not start from the master");
        var x = randn(2, 1, 8, 8).to(ScalarType.BFloat16);
        compute.forward(x, tensor(new long[] { 1, 2 })).to(ScalarType.Float32).square().mean().backward();
        var g = adam.Gradients();
        Assert.Equal(ScalarType.Float32, g.dtype);
        Assert.True(g.abs().sum().item<float>() > 0, "no gradient reached the master");
        adam.Step(g);
        Assert.True(adam.ComputeWeights.eq(adam.Weights.to(ScalarType.BFloat16)).all().item<bool>(), "the copy was not refreshed after the step");
        Assert.Equal(compute.parameters().First().detach().reshape(-1)[0].item<BFloat16>(), adam.ComputeWeights[0].item<BFloat16>());
    }
}
