using Ddpm.Cli;
using Ddpm.Configuration;
using Ddpm.Models;
using Ddpm.Tests.Models;
using Ddpm.Training;

namespace Ddpm.Tests.Reliability;

/// <summary>The memory estimate made before allocating, refusals of configs that cannot fit, and out-of-memory
/// messages.</summary>
public class ResourceTests
{
    [Theory]
    [InlineData("fixture")]
    [InlineData("default")]
    [InlineData("tiny")]
    public void The_parameter_estimate_is_within_15_percent_of_the_real_count(string which)
    {
        var options = which switch { "fixture" => TestModels.FixtureConfig, "tiny" => TestModels.Tiny(8), _ => new UNetOptions() };
        using var model = new UNet(options);
        long real = model.ParameterCount();
        long estimate = MemoryEstimate.For(new DdpmConfig { Model = options }).Parameters;
        Assert.InRange(estimate, real * 0.85, real * 1.15);
    }

    [Fact]
    public void A_batch_that_cannot_fit_is_refused_with_the_estimate_and_the_available_memory()
    {
        Assert.NotNull(MemoryEstimate.AvailableCpuBytes());
        // Self-attention at 256×256 holds 4 heads × 65,536² scores per image: terabytes at batch 64.
        var config = new DdpmConfig { Model = new UNetOptions { ImSize = 256 }, Train = new TrainOptions { BatchSize = 64 } }.Validate();
        var e = Assert.Throws<TrainingException>(() => Trainer.Create(config, new TorchSharp.torch.Device("cpu")));
        Assert.Contains("GiB", e.Message);
        Assert.Contains("available", e.Message);
        Assert.Contains("batch 64", e.Message);
        // The default config at batch 64 fits easily.
        MemoryEstimate.EnsureFits(new DdpmConfig().Validate(), new TorchSharp.torch.Device("cpu"));
    }

    [Fact]
    public void A_model_too_large_for_memory_is_refused_before_its_weights_are_allocated()
    {
        var config = new DdpmConfig
        {
            Model = new UNetOptions { DownChannels = [32, 64, 128, 65536], MidChannels = [65536, 65536, 128] },
            Train = new TrainOptions { BatchSize = 1 },
        }.Validate();
        var estimate = MemoryEstimate.For(config);
        Assert.True(estimate.Parameters > 100_000_000_000L, $"{estimate.Parameters}");
        Assert.Throws<TrainingException>(() => MemoryEstimate.EnsureFits(config, new TorchSharp.torch.Device("cpu")));
    }

    [Fact]
    public void Out_of_memory_errors_are_recognised_from_libtorch_messages()
    {
        Assert.True(Trainer.IsOutOfMemory(new System.Runtime.InteropServices.ExternalException(
            "CUDA out of memory. Tried to allocate 20.00 GiB (GPU 0; 79.10 GiB total capacity)")));
        Assert.True(Trainer.IsOutOfMemory(new System.Runtime.InteropServices.ExternalException(
            "[enforce fail at alloc_cpu.cpp:121] data. DefaultCPUAllocator: can't allocate memory: you tried to allocate 1099511627776 bytes.")));
        Assert.True(Trainer.IsOutOfMemory(new OutOfMemoryException()));
        Assert.False(Trainer.IsOutOfMemory(new InvalidOperationException("shape mismatch")));
    }
}
