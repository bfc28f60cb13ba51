using Ddpm.Data;
using Ddpm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Training;

[Collection(GlobalRngCollection.Name)]
public class TrainerTests
{
    private static readonly Device Cpu = new("cpu");

    [Trait(TestCategory.Name, TestCategory.Slow)]
    [Fact]
    public void Training_the_tiny_model_on_synthetic_bars_lowers_the_loss()
    {
        using var data = SyntheticImages.Create(256, 1, 8, seed: 1);
        using var trainer = Trainer.Create(TrainingFixtures.TinyConfig(maxSteps: 100), Cpu);
        var losses = new List<float>();
        while (!trainer.Finished) trainer.TrainEpoch(data, s => losses.Add(s.Loss));
        Assert.Equal(100, losses.Count);
        Assert.Equal(100, trainer.Step);
        double first = losses.Take(20).Average(), last = losses.TakeLast(20).Average();
        Assert.True(last < 0.5 * first, $"mean loss of the last 20 steps {last:F4} is not below half of the first 20's {first:F4}");
    }

    [Fact]
    public void Resuming_from_a_checkpoint_gives_the_same_weights_as_training_straight_through()
    {
        var dir = TestPaths.TempDir("resume");
        try
        {
            // 20 images, batch 8 → 3 steps per epoch (the last one short); stop after 4 steps, mid-epoch 2.
            using var data = SyntheticImages.Create(20, 1, 8, seed: 2);
            var straightConfig = TrainingFixtures.TinyConfig(maxSteps: 8, seed: 5);

            using var straight = Trainer.Create(straightConfig, Cpu);
            while (!straight.Finished) straight.TrainEpoch(data);
            Assert.Equal(8, straight.Step);

            var path = Path.Combine(dir, "checkpoint.ckpt");
            using (var first = Trainer.Create(straightConfig with { Train = straightConfig.Train with { MaxSteps = 4 } }, Cpu))
            {
                while (!first.Finished) first.TrainEpoch(data);
                Assert.Equal(4, first.Step);
                Assert.Equal(1, first.Epoch);
                Assert.Equal(1, first.StepInEpoch);
                first.Save(path);
            }
            int adjusted = 0;
            using var resumed = Trainer.Resume(path, Cpu, c =>
            {
                adjusted++;
                return c with { Train = c.Train with { MaxSteps = 8 } };
            });
            Assert.Equal(1, adjusted); // the stored config is parsed, and adjusted, once
            Assert.Equal(8, resumed.Config.Train.MaxSteps);
            Assert.Equal(4, resumed.Step);
            Assert.Equal(1, resumed.Epoch);
            Assert.Equal(1, resumed.StepInEpoch);
            while (!resumed.Finished) resumed.TrainEpoch(data);
            Assert.Equal(8, resumed.Step);
            Assert.Equal(straight.Epoch, resumed.Epoch);

            var a = straight.Model.state_dict();
            var b = resumed.Model.state_dict();
            Assert.Equal(a.Keys, b.Keys);
            foreach (var key in a.Keys)
                Assert.True(a[key].eq(b[key]).all().item<bool>(), $"{key} differs between resumed and straight-through training");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }

    [Fact]
    public void Max_steps_stops_training_and_TrainEpoch_then_returns_null()
    {
        using var data = SyntheticImages.Create(64, 1, 8, seed: 3);
        using var trainer = Trainer.Create(TrainingFixtures.TinyConfig(maxSteps: 3), Cpu);
        var report = trainer.TrainEpoch(data);
        Assert.NotNull(report);
        Assert.Equal(3, report.Steps);
        Assert.False(report.Complete);
        Assert.True(double.IsFinite(report.MeanLoss) && report.MeanLoss > 0);
        Assert.True(trainer.Finished);
        Assert.Null(trainer.TrainEpoch(data));
    }

    [Fact]
    public void One_open_checkpoint_reader_serves_the_weights_the_training_state_and_the_EMA()
    {
        var dir = TestPaths.TempDir("reader");
        try
        {
            var config = TrainingFixtures.TinyConfig(maxSteps: 2) with { Train = TrainingFixtures.TinyConfig(2).Train with { EmaDecay = 0.9 } };
            using var data = SyntheticImages.Create(16, 1, 8, seed: 4);
            var path = Path.Combine(dir, "checkpoint.ckpt");
            using var trainer = Trainer.Create(config, Cpu);
            while (!trainer.Finished) trainer.TrainEpoch(data);
            trainer.Save(path);

            using var reader = CheckpointReader.Open(path);
            File.Delete(path); // everything below comes through the one handle the reader holds
            Assert.Same(reader.Config, reader.Config);
            Assert.Equal(2, reader.Manifest.Step);
            Assert.True(reader.HasEma && reader.HasTrainingState);
            using var model = reader.LoadModel();
            foreach (var (key, value) in trainer.Model.state_dict())
                Assert.True(value.eq(model.state_dict()[key]).all().item<bool>(), $"{key} was not restored");
            reader.LoadEmaInto(model);
            Assert.True(model.state_dict()["conv_out.weight"].eq(trainer.Ema!.Shadow.state_dict()["conv_out.weight"]).all().item<bool>());
            using var adam = optim.Adam(model.parameters(), 1e-3);
            using var generator = new Generator(99, Cpu);
            reader.LoadTrainingState(new Checkpoint.TrainingState(adam, generator));
            Assert.True(generator.get_state().eq(trainer.Generator.get_state()).all().item<bool>(), "the RNG state was not restored");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
