using Ddpm.Diffusion;
using Ddpm.Sampling;
using static TorchSharp.torch;
using Ort = Ddpm.Onnx.Sampling;

namespace Ddpm.Tests.Onnx;

/// <summary>The span samplers of Ddpm.Onnx against the TorchSharp samplers, step by step on the same x, ε and
/// z.</summary>
public sealed class SpanSamplerTests
{
    private static NoiseSchedule Schedule(string kind) =>
        kind == "cosine" ? NoiseSchedule.Cosine(40) : NoiseSchedule.Linear(60, 1e-4, 0.1);

    public static TheoryData<string, string> Cases => new()
    {
        { "ddpm", "linear" }, { "ddpm-beta-clip", "linear" }, { "ddpm-respaced", "cosine" }, { "ddpm-respaced-clip", "linear" },
        { "ddim", "linear" }, { "ddim-eta-clip", "cosine" }, { "ddim-quadratic", "linear" },
        { "dpmpp-2m-sde", "linear" }, { "dpmpp-2m-sde-clip", "cosine" }, { "dpmpp-2m", "linear" }, { "dpmpp-2m-lambda", "cosine" },
    };

    private static (SamplerOptions Torch, Ort.SamplerSettings Span) Settings(string name) => name switch
    {
        "ddpm" => (new SamplerOptions { Kind = SamplerKind.Ddpm }, new Ort.SamplerSettings { Kind = Ort.SamplerKind.Ddpm }),
        "ddpm-beta-clip" => (new SamplerOptions { Kind = SamplerKind.Ddpm, Variance = VarianceKind.Beta, ClipX0 = true },
            new Ort.SamplerSettings { Kind = Ort.SamplerKind.Ddpm, Variance = Ort.VarianceKind.Beta, ClipX0 = true }),
        "ddpm-respaced" => (new SamplerOptions { Kind = SamplerKind.Ddpm, Steps = 12 }, new Ort.SamplerSettings { Kind = Ort.SamplerKind.Ddpm, Steps = 12 }),
        "ddpm-respaced-clip" => (new SamplerOptions { Kind = SamplerKind.Ddpm, Steps = 9, Spacing = SpacingKind.Karras, ClipX0 = true },
            new Ort.SamplerSettings { Kind = Ort.SamplerKind.Ddpm, Steps = 9, Spacing = Ort.SpacingKind.Karras, ClipX0 = true }),
        "ddim" => (new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 10 }, new Ort.SamplerSettings { Kind = Ort.SamplerKind.Ddim, Steps = 10 }),
        "ddim-eta-clip" => (new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 8, Eta = 0.7, ClipX0 = true },
            new Ort.SamplerSettings { Kind = Ort.SamplerKind.Ddim, Steps = 8, Eta = 0.7, ClipX0 = true }),
        "ddim-quadratic" => (new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 15, Spacing = SpacingKind.Quadratic, Eta = 1 },
            new Ort.SamplerSettings { Kind = Ort.SamplerKind.Ddim, Steps = 15, Spacing = Ort.SpacingKind.Quadratic, Eta = 1 }),
        "dpmpp-2m-sde" => (new SamplerOptions { Kind = SamplerKind.DpmSolver2MSde }, new Ort.SamplerSettings()),
        "dpmpp-2m-sde-clip" => (new SamplerOptions { Kind = SamplerKind.DpmSolver2MSde, Steps = 10, ClipX0 = true },
            new Ort.SamplerSettings { Steps = 10, ClipX0 = true }),
        "dpmpp-2m" => (new SamplerOptions { Kind = SamplerKind.DpmSolver2M }, new Ort.SamplerSettings { Kind = Ort.SamplerKind.DpmSolver2M }),
        "dpmpp-2m-lambda" => (new SamplerOptions { Kind = SamplerKind.DpmSolver2M, Steps = 7, Spacing = SpacingKind.Lambda },
            new Ort.SamplerSettings { Kind = Ort.SamplerKind.DpmSolver2M, Steps = 7, Spacing = Ort.SpacingKind.Lambda }),
        _ => throw new ArgumentException(name),
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public void Each_span_sampler_step_equals_the_TorchSharp_step_on_the_same_inputs(string sampler, string schedule)
    {
        var s = Schedule(schedule);
        var (torchSettings, spanSettings) = Settings(sampler);
        var torch = torchSettings.Create(s);
        var span = spanSettings.Create(new Ddpm.Onnx.DiffusionSchedule(s.Betas));
        Assert.Equal(torch.Timesteps, span.Timesteps);
        using var generator = new Generator(11);
        long[] shape = [3, 1, 5, 5];
        var x = randn(shape, generator: generator) * 1.5;
        try
        {
            for (int i = 0; i < torch.Timesteps.Count; i++)
            {
                Assert.Equal(torch.UsesNoise(i), span.UsesNoise(i));
                using var eps = randn(shape, generator: generator);
                using var z = randn(shape, generator: generator);
                using var expected = torch.Step(eps, i, x, torch.UsesNoise(i) ? z : null);
                var actual = new float[x.numel()];
                span.Step(eps.data<float>().ToArray(), i, x.data<float>().ToArray(), span.UsesNoise(i) ? z.data<float>().ToArray() : [], actual);
                var want = expected.data<float>().ToArray();
                double error = OnnxFamilies.RelativeError(actual, want);
                Assert.True(error < 1e-6, $"{sampler}, step {i} (t = {torch.Timesteps[i]}): relative error {error:E2}");
                // Both go on from the TorchSharp result, so every step is compared on the same input.
                x.Dispose();
                x = expected.clone();
            }
        }
        finally
        {
            x.Dispose();
        }
    }

    [Theory]
    [InlineData("linear")]
    [InlineData("cosine")]
    public void Every_spacing_picks_the_same_timesteps_as_the_TorchSharp_library(string schedule)
    {
        var s = Schedule(schedule);
        var span = new Ddpm.Onnx.DiffusionSchedule(s.Betas);
        foreach (var (kind, spanKind) in new[] { (SpacingKind.Uniform, Ort.SpacingKind.Uniform), (SpacingKind.Quadratic, Ort.SpacingKind.Quadratic),
                     (SpacingKind.Lambda, Ort.SpacingKind.Lambda), (SpacingKind.Karras, Ort.SpacingKind.Karras) })
            foreach (int steps in new[] { 1, 2, 5, 20, s.T - 1, s.T })
                Assert.Equal(TimestepSpacing.Ascending(s, steps, kind), Ort.TimestepSpacing.Ascending(span, steps, spanKind));
        Assert.Equal(s.AlphasCumprod, span.AlphasCumprod);
        Assert.Equal(s.PosteriorLogVarianceClipped, span.PosteriorLogVarianceClipped);
    }

    [Fact]
    public void A_multistep_solver_refuses_steps_out_of_order_and_bad_settings_are_named()
    {
        var span = new Ddpm.Onnx.DiffusionSchedule(NoiseSchedule.Linear(50).Betas);
        var solver = new Ort.SamplerSettings { Kind = Ort.SamplerKind.DpmSolver2M }.Create(span);
        var buffer = new float[4];
        solver.Step(buffer, 0, buffer, [], new float[4]);
        var e = Assert.Throws<InvalidOperationException>(() => solver.Step(buffer, 2, buffer, [], new float[4]));
        Assert.Contains("expected step 1", e.Message);
        Assert.Contains("eta applies to the ddim sampler only",
            Assert.Throws<ArgumentException>(() => new Ort.SamplerSettings { Eta = 0.5 }.Create(span)).Message);
        Assert.Contains("1..T = 1..50", Assert.Throws<ArgumentException>(() => new Ort.SamplerSettings { Steps = 51 }.Create(span)).Message);
        var ddpm = new Ort.SamplerSettings { Kind = Ort.SamplerKind.Ddpm }.Create(span);
        Assert.Contains("needs noise", Assert.Throws<ArgumentException>(() => ddpm.Step(buffer, 0, buffer, [], new float[4])).Message);
    }
}
