using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Tests.Models;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Training;

[Collection(GlobalRngCollection.Name)]
public class EmaAndGuidanceTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("ema");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Fact]
    public void Ema_update_follows_the_warm_up_formula()
    {
        using var scope = NewDisposeScope();
        var model = new UNet(TestModels.Tiny(8));
        using var ema = new ExponentialMovingAverage(model, 0.999);
        Assert.Equal(0.1, ema.DecayAt(0), 12);
        Assert.Equal(0.999, ema.DecayAt(1_000_000), 12);
        var before = ema.Shadow.parameters().First().detach().clone();
        using (no_grad()) foreach (var p in model.parameters()) p.add_(1.0);
        var after = model.parameters().First().detach().clone();
        ema.Update(cat(model.parameters().Select(p => p.detach().reshape(-1)).ToArray()), 5); // d = min(0.999, 6/15) = 0.4
        var expected = 0.4 * before + 0.6 * after;
        Assert.True((ema.Shadow.parameters().First() - expected).abs().max().item<float>() < 1e-6f);
    }

    [Fact]
    public void Guidance_with_w_zero_equals_the_conditional_model_and_w_mixes_linearly()
    {
        using var scope = NewDisposeScope();
        var model = new UNet(TestModels.Tiny(8) with { NumClasses = 3 });
        model.eval();
        var x = randn(2, 1, 8, 8, generator: new Generator(1));
        var t = tensor(new long[] { 5, 40 });
        var y = tensor(new long[] { 2, 0 });
        using var noGrad = no_grad();
        var cond = model.forward(x, t, y);
        var uncond = model.forward(x, t, full(2, model.NullLabel, dtype: int64));
        Assert.False(cond.eq(uncond).all().item<bool>());
        Assert.True((ClassifierFreeGuidance.Guided(model, y, 0)(x, t) - cond).abs().max().item<float>() < 1e-6f);
        var w3 = ClassifierFreeGuidance.Guided(model, y, 3)(x, t);
        Assert.True((w3 - (4 * cond - 3 * uncond)).abs().max().item<float>() < 1e-4f);
        Assert.Throws<ArgumentException>(() => ClassifierFreeGuidance.Guided(new UNet(TestModels.Tiny(8)), y, 1));
    }

    [Fact]
    public void A_conditional_model_with_ema_trains_saves_and_reloads_both_weight_sets()
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: 6) with { };
        config = (config with
        {
            Model = config.Model with { NumClasses = 2 },
            Train = config.Train with { EmaDecay = 0.9, LabelDropout = 0.25 },
        }).Validate();
        using var data = SyntheticImages.Create(64, 1, 8);
        using var trainer = Trainer.Create(config, CPU);
        var report = trainer.TrainEpoch(data)!;
        Assert.Equal(6, report.Steps);
        Assert.NotNull(trainer.Ema);
        var path = Path.Combine(_dir, "c.ckpt");
        trainer.Save(path);
        Assert.True(Checkpoint.HasEma(path));
        var (model, loaded, _) = Checkpoint.LoadModel(path);
        using var _m = model;
        Assert.Equal(2, loaded.Model.NumClasses);
        Assert.Equal(0.25, loaded.Train.LabelDropout);
        var raw = model.state_dict()["conv_out.weight"].clone();
        Assert.True(raw.eq(trainer.Model.state_dict()["conv_out.weight"]).all().item<bool>());
        Checkpoint.LoadEmaInto(path, model);
        Assert.True(model.state_dict()["conv_out.weight"].eq(trainer.Ema!.Shadow.state_dict()["conv_out.weight"]).all().item<bool>());
        Assert.False(model.state_dict()["conv_out.weight"].eq(raw).all().item<bool>());
    }

    [Fact]
    public void A_checkpoint_without_ema_has_none_and_a_conditional_model_needs_labels()
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: 1);
        using var trainer = Trainer.Create(config, CPU);
        trainer.TrainEpoch(SyntheticImages.Create(8, 1, 8));
        var path = Path.Combine(_dir, "u.ckpt");
        trainer.Save(path);
        Assert.False(Checkpoint.HasEma(path));
        Assert.Throws<CheckpointException>(() => Checkpoint.LoadEmaInto(path, new UNet(config.Model)));

        var conditional = (config with { Model = config.Model with { NumClasses = 2 } }).Validate();
        using var c = Trainer.Create(conditional, CPU);
        using var unlabelled = new ImageDataset(zeros(new long[] { 8, 1, 8, 8 }, dtype: ScalarType.Byte), null, "unlabelled");
        Assert.Throws<TrainingException>(() => c.TrainEpoch(unlabelled));
        using var tooManyClasses = new ImageDataset(zeros(new long[] { 8, 1, 8, 8 }, dtype: ScalarType.Byte), arange(8, dtype: int64), "labels 0..7");
        var e = Assert.Throws<TrainingException>(() => c.TrainEpoch(tooManyClasses));
        Assert.Contains("0..1", e.Message);
    }
}
