using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Training;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Training;

public class LearningRateScheduleTests
{
    private static void Near(double expected, double actual) =>
        Assert.True(Math.Abs(actual - expected) <= 1e-12 + 1e-9 * Math.Abs(expected), $"expected {expected}, got {actual}");

    [Fact]
    public void Warm_up_rises_linearly_to_the_base_lr_then_each_schedule_decays_to_zero_at_the_last_step()
    {
        // Base 1e-3, 100 warm-up steps, 1,100 steps in all (1,000 after the warm-up).
        var cosine = new LearningRateSchedule(1e-3, LrScheduleKind.Cosine, 100, 1100);
        var linear = cosine with { Kind = LrScheduleKind.Linear };
        var constant = cosine with { Kind = LrScheduleKind.Constant };
        foreach (var s in new[] { cosine, linear, constant })
        {
            Near(1e-5, s.At(0));
            Near(5e-4, s.At(49));
            Near(1e-3, s.At(99));
            Near(1e-3, s.At(100));
        }
        Near(5e-4, cosine.At(600));                  // p = 1/2: ½(1 + cos π/2)
        Near(8.535533905932738e-4, cosine.At(350));  // p = 1/4: ½(1 + 1/√2)
        Assert.InRange(cosine.At(1099), 2.4673e-9, 2.4675e-9); // the last step, p = 0.999: ≈ ½(π/1000)²/2 · 1e-3
        Near(0, cosine.At(5000));                     // past the end: clamped
        Near(5e-4, linear.At(600));
        Near(2.5e-4, linear.At(850));
        Near(1e-6, linear.At(1099));
        Near(1e-3, constant.At(600));
        Near(1e-3, constant.At(5000));
        Near(1e-3, new LearningRateSchedule(1e-3, LrScheduleKind.Cosine, 0, 1000).At(0));
    }
}

[Collection(GlobalRngCollection.Name)]
public class LearningRateScheduleTrainerTests
{
    private static readonly Device Cpu = new("cpu");

    private static DdpmConfig Scheduled(long maxSteps) => TrainingFixtures.TinyConfig(maxSteps, seed: 4) is var c
        ? c with { Train = c.Train with { LrSchedule = LrScheduleKind.Cosine, LrWarmupSteps = 2, MinSnrGamma = 5 } }
        : throw new InvalidOperationException();

    [Fact]
    public void The_trainer_sets_the_scheduled_lr_before_each_step_and_a_resumed_run_stays_on_the_same_curve()
    {
        var dir = TestPaths.TempDir("lr-schedule");
        try
        {
            using var data = SyntheticImages.Create(20, 1, 8, seed: 2);
            var config = Scheduled(8);
            var seen = new List<double>();
            using var straight = Trainer.Create(config, Cpu);
            while (!straight.Finished) straight.TrainEpoch(data, _ => seen.Add(straight.LearningRate));
            var expected = new LearningRateSchedule(1e-3, LrScheduleKind.Cosine, 2, 8);
            Assert.Equal(8, seen.Count);
            for (int i = 0; i < 8; i++) Assert.Equal(expected.At(i), seen[i], 12);
            Assert.Equal(5e-4, seen[0], 12);
            Assert.True(seen[7] < seen[2], "the lr decays after the warm-up");

            // Interrupted after 4 steps (mid-epoch 2: 3 steps per epoch), saved, resumed: the same weights as straight
            // through.
            var path = Path.Combine(dir, "checkpoint.ckpt");
            using (var first = Trainer.Create(config, Cpu))
            {
                using var stop = new CancellationTokenSource();
                while (!stop.IsCancellationRequested) first.TrainEpoch(data, s => { if (s.Step == 4) stop.Cancel(); }, stop.Token);
                Assert.Equal(4, first.Step);
                first.Save(path);
            }
            using var resumed = Trainer.Resume(path, Cpu);
            while (!resumed.Finished) resumed.TrainEpoch(data);
            Assert.Equal(8, resumed.Step);
            var a = straight.Model.state_dict();
            var b = resumed.Model.state_dict();
            foreach (var key in a.Keys)
                Assert.True(a[key].eq(b[key]).all().item<bool>(), $"{key} differs between resumed and straight-through training");
        }
        finally { Directory.Delete(dir, recursive: true); }
    }
}
