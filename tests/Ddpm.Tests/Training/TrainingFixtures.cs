using Ddpm.Configuration;
using Ddpm.Tests.Models;

namespace Ddpm.Tests.Training;

internal static class TrainingFixtures
{
    /// <summary>The tiny U-Net on 8×8 images, T = 50.</summary>
    public static DdpmConfig TinyConfig(long maxSteps, int batchSize = 8, double lr = 1e-3, long seed = 0, int imSize = 8) => new DdpmConfig
    {
        Dataset = new DatasetOptions { Name = "synthetic" },
        Diffusion = new DiffusionOptions { NumTimesteps = 50, BetaStart = 1e-4, BetaEnd = 0.2 },
        Model = TestModels.Tiny(imSize),
        Train = new TrainOptions { BatchSize = batchSize, NumEpochs = 1000, Lr = lr, Seed = seed, MaxSteps = maxSteps },
    }.Validate();
}
