using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Diffusion;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Tests.Models;
using Ddpm.Tests.Training;
using Ddpm.Training;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// Resident memory stays flat over long runs: 2,000 sampling steps by default (10,000 with DDPM_LONG_TESTS=1) of the
/// tiny U-Net at batch 2 on 8×8, and an epoch of training. RSS is read after a warm-up and at the end; growth must stay
/// under 30 MB. In the serial collection so no other test's allocations move the number.
/// </summary>
[Collection(GlobalRngCollection.Name)]
[Trait(TestCategory.Name, TestCategory.Slow)]
public class MemoryGrowthTests(ITestOutputHelper output)
{
    private const long MarginBytes = 30L << 20;
    private static readonly Device Cpu = new("cpu");

    private static long Rss()
    {
        GC.Collect();
        GC.WaitForPendingFinalizers();
        GC.Collect();
        foreach (var line in File.ReadLines("/proc/self/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1]) * 1024;
        throw new InvalidOperationException("no VmRSS in /proc/self/status");
    }

    [Fact]
    public void Rss_stays_flat_across_thousands_of_sampling_steps()
    {
        int steps = ChildProcess.LongTests ? 10_000 : 2_000;
        // Betas scaled by 1000 / T keep ᾱ_T near the standard T = 1000 schedule's, so the chain stays finite at any
        // length.
        var diffusion = GaussianDiffusion.FromOptions(new DiffusionOptions { NumTimesteps = steps, BetaStart = 0.1 / steps, BetaEnd = 20.0 / steps });
        using var model = new UNet(TestModels.Tiny(8));
        model.eval();
        var sampler = new DdpmSampler(diffusion);
        using var generator = new Generator(0, Cpu);
        long warm = 0;
        var clock = System.Diagnostics.Stopwatch.StartNew();
        using var x = SamplingLoop.Run(sampler, (xt, t) => model.forward(xt, t, null), [2, 1, 8, 8], Cpu, generator,
            (i, _, _) => { if (i == 200) warm = Rss(); });
        long end = Rss();
        output.WriteLine($"sampling {steps:N0} steps in {clock.Elapsed.TotalSeconds:F1} s: RSS after 200 steps {warm / 1048576.0:F1} MB, at the end {end / 1048576.0:F1} MB (growth {(end - warm) / 1048576.0:F1} MB)");
        Assert.True(x.isfinite().all().item<bool>());
        Assert.True(end - warm < MarginBytes, $"RSS grew by {(end - warm) / 1048576.0:F1} MB over {steps} sampling steps");
    }

    [Fact]
    public void Rss_stays_flat_across_an_epoch_of_training()
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: 0, batchSize: 8);
        using var data = SyntheticImages.Create(512, 1, 8); // 64 steps per epoch
        using var trainer = Trainer.Create(config, Cpu);
        trainer.TrainEpoch(data); // warm-up epoch: allocator pools, Adam state
        long warm = Rss();
        var report = trainer.TrainEpoch(data)!;
        long end = Rss();
        output.WriteLine($"training epoch of {report.Steps} steps: RSS after a warm-up epoch {warm / 1048576.0:F1} MB, after the next {end / 1048576.0:F1} MB (growth {(end - warm) / 1048576.0:F1} MB)");
        Assert.True(end - warm < MarginBytes, $"RSS grew by {(end - warm) / 1048576.0:F1} MB over an epoch");
    }
}
