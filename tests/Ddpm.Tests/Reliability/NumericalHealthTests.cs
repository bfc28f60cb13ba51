using Ddpm.Runs;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Tests.Training;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// lr = 1e30 makes the first Adam step push the weights to ~1e30, so the next forward pass overflows: the run stops
/// naming the step (the default) and the last good checkpoint keeps its bytes, or with <c>on_nonfinite: skip</c> the
/// bad steps are skipped and the weights stay finite.
/// </summary>
public class NumericalHealthTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("nonfinite");
    private static readonly Device Cpu = new("cpu");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static DdpmConfig Exploding(NonFiniteAction action) => TrainingFixtures.TinyConfig(maxSteps: 6, batchSize: 8, lr: 1e30) with
    {
        Train = TrainingFixtures.TinyConfig(6, 8, 1e30).Train with { OnNonFinite = action },
    };

    [Fact]
    public void A_non_finite_loss_stops_training_with_its_step_and_leaves_the_last_checkpoint_byte_for_byte_intact()
    {
        using var data = SyntheticImages.Create(8, 1, 8); // one step per epoch: a checkpoint after every step
        var folder = new CheckpointFolder(_dir, keep: 3);
        using var trainer = new Trainer(new Ddpm.Models.UNet(Exploding(NonFiniteAction.Stop).Model), Exploding(NonFiniteAction.Stop), Cpu);
        byte[]? lastGood = null;
        var e = Assert.Throws<TrainingException>(() =>
        {
            while (!trainer.Finished)
            {
                trainer.TrainEpoch(data);
                folder.Save(trainer.Step, trainer.Save);
                lastGood = File.ReadAllBytes(folder.LatestPath);
            }
        });
        Assert.NotNull(lastGood);
        // The failed step counts as taken (its update was masked out); the checkpoint is from the step before.
        Assert.Contains($"at step {trainer.Step} ", e.Message);
        Assert.Contains("training stopped", e.Message);
        Assert.DoesNotContain("checkpoint", e.Message); // the trainer cannot know whether one exists; the CLI says (TrainRunFolderTests)
        Assert.Equal(lastGood, File.ReadAllBytes(folder.LatestPath));
        Assert.Equal(trainer.Step - 1, Checkpoint.ReadManifest(folder.LatestPath).Step);
        Checkpoint.LoadModel(folder.LatestPath).Model.Dispose();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void With_on_nonfinite_skip_the_bad_steps_are_skipped_and_the_weights_stay_finite(bool maskOnDevice)
    {
        var config = Exploding(NonFiniteAction.Skip);
        using var data = SyntheticImages.Create(8, 1, 8);
        var warnings = new List<string>();
        using var trainer = new Trainer(new Ddpm.Models.UNet(config.Model), config, Cpu,
            new TrainerOptions { MaskOnDevice = maskOnDevice, SyncEvery = maskOnDevice ? 3 : 1, Warn = warnings.Add });
        while (trainer.TrainEpoch(data) is not null) { }
        Assert.Equal(6, trainer.Step);
        Assert.True(trainer.SkippedSteps >= 1, "no step was skipped: lr = 1e30 did not blow up");
        Assert.Equal(trainer.SkippedSteps, warnings.Count);
        Assert.Contains("skipped", warnings[0]);
        foreach (var p in trainer.Model.parameters()) Assert.True(p.isfinite().all().item<bool>(), "a weight became non-finite");
    }

    [Fact]
    public void Reading_losses_every_4_steps_names_the_first_bad_step_and_never_applies_a_non_finite_update()
    {
        var config = Exploding(NonFiniteAction.Stop);
        using var data = SyntheticImages.Create(64, 1, 8); // 8 steps per epoch
        using var eager = new Trainer(new Ddpm.Models.UNet(config.Model), config, Cpu);
        var eagerError = Assert.Throws<TrainingException>(() => eager.TrainEpoch(data));
        long firstBad = eager.Step;

        using var windowed = new Trainer(new Ddpm.Models.UNet(config.Model), config, Cpu, new TrainerOptions { SyncEvery = 4, MaskOnDevice = true }); // as on a GPU
        var seen = new List<long>();
        var e = Assert.Throws<TrainingException>(() => windowed.TrainEpoch(data, s => seen.Add(s.Step)));
        Assert.Contains($"at step {firstBad} ", e.Message);
        Assert.Contains("update was not applied", e.Message);
        Assert.Equal(Enumerable.Range(1, (int)firstBad - 1).Select(i => (long)i), seen);
        Assert.True(windowed.Step >= firstBad && windowed.Step <= 4 * ((firstBad + 3) / 4), $"step {windowed.Step} after a window of 4 ending past {firstBad}");
        foreach (var p in windowed.Model.parameters()) Assert.True(p.isfinite().all().item<bool>(), "a non-finite update was applied");
        Assert.Contains($"at step {firstBad} ", eagerError.Message);
    }

    [Fact]
    public void The_on_nonfinite_and_keep_checkpoints_keys_round_trip_through_yaml_and_are_validated()
    {
        var config = DdpmConfig.Parse("train_params:\n  on_nonfinite: skip\n  keep_checkpoints: 5\n");
        Assert.Equal(NonFiniteAction.Skip, config.Train.OnNonFinite);
        Assert.Equal(5, config.Train.KeepCheckpoints);
        Assert.Equal(config, DdpmConfig.Parse(config.ToYaml()) with { Model = config.Model, Dataset = config.Dataset, Diffusion = config.Diffusion });
        Assert.Equal(3, new DdpmConfig().Train.KeepCheckpoints);
        Assert.Equal("train_params.on_nonfinite", Assert.Throws<ConfigException>(() => DdpmConfig.Parse("train_params:\n  on_nonfinite: ignore\n")).Key);
        Assert.Equal("train_params.keep_checkpoints", Assert.Throws<ConfigException>(() => DdpmConfig.Parse("train_params:\n  keep_checkpoints: -1\n")).Key);
    }
}
