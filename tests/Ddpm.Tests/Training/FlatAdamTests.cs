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
        using var perTensor = Trainer.Create(config, Cpu, flatOptimizer: false);
        using var flat = Trainer.Create(config, Cpu);
        flat.MaskOnDevice = maskOnDevice;
        Assert.False(perTensor.FlatOptimizer);
        Assert.True(flat.FlatOptimizer);
        var lossesA = new List<float>();
        var lossesB = new List<float>();
        while (!perTensor.Finished) perTensor.TrainEpoch(data, s => lossesA.Add(s.Loss));
        while (!flat.Finished) flat.TrainEpoch(data, s => lossesB.Add(s.Loss));

        Assert.Equal(12, lossesB.Count);
        for (int i = 0; i < lossesA.Count; i++) Assert.Equal(lossesA[i], lossesB[i], 1e-5f);
        var a = perTensor.Model.state_dict();
        var b = flat.Model.state_dict();
        var ea = perTensor.Ema!.Shadow.state_dict();
        var eb = flat.Ema!.Shadow.state_dict();
        double moved = 0;
        foreach (var key in a.Keys)
        {
            // Same arithmetic per element; only vectorisation (FMA vs separate rounding) may differ in the last bit.
            Assert.True(MaxAbsDiff(a[key], b[key]) <= 1e-6, $"{key}: weights differ by {MaxAbsDiff(a[key], b[key]):G3}");
            Assert.True(MaxAbsDiff(ea[key], eb[key]) <= 1e-6, $"{key}: EMA weights differ by {MaxAbsDiff(ea[key], eb[key]):G3}");
            moved = Math.Max(moved, MaxAbsDiff(a[key], ea[key]));
        }
        Assert.True(moved > 1e-4, "the EMA did not lag the weights at all: the comparison would be vacuous");
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
        using var windowed = Trainer.Create(config, Cpu);
        windowed.SyncEvery = 5;
        windowed.MaskOnDevice = true; // as on a GPU
        var a = new List<StepReport>();
        var b = new List<StepReport>();
        while (!eager.Finished) eager.TrainEpoch(data, a.Add);
        while (!windowed.Finished) windowed.TrainEpoch(data, b.Add);
        Assert.Equal(a.Select(r => (r.Epoch, r.Step, r.StepInEpoch, r.Loss)), b.Select(r => (r.Epoch, r.Step, r.StepInEpoch, r.Loss)));
        foreach (var (key, value) in eager.Model.state_dict())
            Assert.True(value.eq(windowed.Model.state_dict()[key]).all().item<bool>(), $"{key} depends on SyncEvery");
        Assert.Throws<ArgumentOutOfRangeException>(() => windowed.SyncEvery = 0);
    }

    [Fact]
    public void A_checkpoint_of_the_per_tensor_optimizer_resumes_on_the_flat_one_and_the_other_way()
    {
        var dir = TestPaths.TempDir("flat-resume");
        try
        {
            using var data = SyntheticImages.Create(24, 1, 8, seed: 8);
            var config = TrainingFixtures.TinyConfig(maxSteps: 6, seed: 9);
            using var straight = Trainer.Create(config, Cpu, flatOptimizer: false);
            while (!straight.Finished) straight.TrainEpoch(data);

            foreach (bool firstFlat in new[] { false, true })
            {
                var path = Path.Combine(dir, $"first-flat-{firstFlat}.ckpt");
                using (var first = Trainer.Create(config with { Train = config.Train with { MaxSteps = 3 } }, Cpu, flatOptimizer: firstFlat))
                {
                    while (!first.Finished) first.TrainEpoch(data);
                    first.Save(path);
                }
                using var resumed = Trainer.Resume(path, Cpu, c => c with { Train = c.Train with { MaxSteps = 6 } }, flatOptimizer: !firstFlat);
                while (!resumed.Finished) resumed.TrainEpoch(data);
                foreach (var (key, value) in straight.Model.state_dict())
                    Assert.True(MaxAbsDiff(value, resumed.Model.state_dict()[key]) <= 1e-6,
                        $"{key} differs after resuming a {(firstFlat ? "flat" : "per-tensor")} checkpoint on the other optimizer");
            }
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
    public void The_bf16_copy_follows_the_master_weights_and_bf16_needs_the_flat_optimizer()
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

        var e = Assert.Throws<TrainingException>(() => Trainer.Create(Bf16Config(1), Cpu, flatOptimizer: false));
        Assert.Contains("precision: bf16", e.Message);
    }
}
