using System.Diagnostics;
using Ddpm.Diffusion;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Tests.Models;
using static TorchSharp.torch;

namespace Ddpm.Tests.Sampling;

/// <summary>
/// <see cref="ImageGenerator.Dispose"/> while another thread generates (issue 25: a segfault 1 in 8, else "Tensor
/// invalid -- empty handle"): it waits for the generation, which completes; later calls throw ObjectDisposedException.
/// </summary>
public sealed class ImageGeneratorDisposeTests
{
    [Fact]
    public void Dispose_during_a_generation_waits_for_it_and_later_calls_are_refused()
    {
        using var model = new UNet(TestModels.Tiny(8));
        var generator = new ImageGenerator(model, new GaussianDiffusion(NoiseSchedule.Linear(200, 1e-4, 0.02)));
        var request = new GenerationRequest { Count = 2, Seed = 1, Sampler = new SamplerOptions { Kind = SamplerKind.Ddpm } };
        using var started = new ManualResetEventSlim();
        var clock = Stopwatch.StartNew();
        TimeSpan lastStep = default;
        long stepsDone = 0;
        float? mean = null;
        Exception? failure = null;
        var worker = new Thread(() =>
        {
            try
            {
                using var result = generator.Generate(request, s =>
                {
                    (stepsDone, lastStep) = (s.Done, clock.Elapsed);
                    if (s.Done == 1) started.Set();
                });
                mean = result.Images.abs().mean().item<float>(); // the images are intact after the Dispose began
            }
            catch (Exception e) { failure = e; }
            finally { started.Set(); }
        });
        worker.Start();
        Assert.True(started.Wait(TimeSpan.FromMinutes(2)), "the generation did not start");
        generator.Dispose();
        var disposed = clock.Elapsed;
        worker.Join();
        Assert.Null(failure);
        Assert.True(mean is > 0 and <= 1, $"images' mean |x| {mean}");
        Assert.Equal(200, stepsDone);
        Assert.True(lastStep <= disposed, $"Dispose returned at {disposed.TotalSeconds:F3} s, before the last step at {lastStep.TotalSeconds:F3} s");

        Assert.Throws<ObjectDisposedException>(() => generator.Generate(request));
        Assert.Throws<ObjectDisposedException>(() => generator.Plan(request));
        using (var x = randn(1, 1, 8, 8))
        using (var t = tensor(new long[] { 3 }))
            Assert.Throws<ObjectDisposedException>(() => generator.EpsPredictor(x, t));
        generator.Dispose(); // again: nothing to do
    }

    [Fact]
    public void Dispose_from_a_step_callback_is_refused_rather_than_waiting_for_itself()
    {
        using var model = new UNet(TestModels.Tiny(8));
        using var generator = new ImageGenerator(model, new GaussianDiffusion(NoiseSchedule.Linear(10, 1e-4, 0.2)));
        var e = Assert.Throws<InvalidOperationException>(() =>
            generator.Generate(new GenerationRequest { Count = 1 }, _ => generator.Dispose()).Dispose());
        Assert.Contains("from inside one of its own calls", e.Message);
        using var result = generator.Generate(new GenerationRequest { Count = 1 }); // still usable
        Assert.Equal(new long[] { 1, 1, 8, 8 }, result.Images.shape);
    }
}
