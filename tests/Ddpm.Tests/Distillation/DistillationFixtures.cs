using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Distillation;
using Ddpm.Tests.Training;
using Ddpm.Training;
using TorchSharp;

namespace Ddpm.Tests.Distillation;

/// <summary>
/// A tiny class-conditional teacher (8×8 bars, T = 50, two classes) trained for a few steps, saved as a checkpoint.
/// </summary>
internal static class DistillationFixtures
{
    public static readonly torch.Device Cpu = new("cpu");

    public static DdpmConfig TeacherConfig(long steps = 30)
    {
        var tiny = TrainingFixtures.TinyConfig(maxSteps: steps, seed: 3);
        return tiny with
        {
            Model = Models.TestModels.Tiny(8) with { NumClasses = 2 },
            Train = tiny.Train with { LabelDropout = 0.2, EmaDecay = 0.9 },
        };
    }

    /// <summary>Trains the teacher on the synthetic bars and saves it to <paramref name="dir"/>/teacher.ckpt.</summary>
    public static string Teacher(string dir, long steps = 30)
    {
        var path = Path.Combine(dir, "teacher.ckpt");
        using var data = SyntheticImages.Create(512, 1, 8);
        using var trainer = Trainer.Create(TeacherConfig(steps).Validate(), Cpu);
        while (!trainer.Finished) trainer.TrainEpoch(data);
        trainer.Save(path);
        return path;
    }

    /// <summary>
    /// Distillation of <paramref name="teacher"/> from DDIM-8 to 2 steps (two rounds) in short rounds, w = 2.
    /// </summary>
    public static DistillationOptions Options(string teacher, long stepsPerRound = 6) => new()
    {
        Teacher = teacher,
        ToSteps = 2,
        FromSteps = 8,
        StepsPerRound = stepsPerRound,
        BatchSize = 8,
        Lr = 1e-3,
        WarmupSteps = 2,
        SaveEvery = 2,
        Guidance = 2,
        Seed = 7,
    };
}
