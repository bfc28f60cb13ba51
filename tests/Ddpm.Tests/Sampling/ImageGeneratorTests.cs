using Ddpm.Configuration;
using Ddpm.Diffusion;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Tests.Data;
using Ddpm.Tests.Models;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Sampling;

/// <summary>The generation pipeline: prediction targets, per-image noise, batching, index ranges, callbacks,
/// cancellation, loading.</summary>
public class ImageGeneratorTests
{
    private static readonly NoiseSchedule Schedule = NoiseSchedule.Linear(10, 1e-4, 0.2);

    private static UNet TinyModel(int classes = 0) => new(TestModels.Tiny(8) with { NumClasses = classes });

    private static float MaxGap(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    /// <summary>
    /// ε written out from the schedule's ᾱ_t in float64, independently of GaussianDiffusion: from an x_0 prediction
    /// ε = (x_t − √ᾱ_t x̂_0)/√(1 − ᾱ_t); from a v prediction ε = √(1 − ᾱ_t) x_t + √ᾱ_t v.
    /// </summary>
    private static NoisePredictor ExplicitEps(UNet model, PredictionTarget target) => (x, t) =>
    {
        var output = model.forward(x, t);
        var a = tensor(Schedule.AlphasCumprod, dtype: float64).index_select(0, t).reshape(-1, 1, 1, 1);
        var eps = target == PredictionTarget.X0
            ? (x.to(float64) - a.sqrt() * output.to(float64)) / (1 - a).sqrt()
            : (1 - a).sqrt() * x.to(float64) + a.sqrt() * output.to(float64);
        return eps.to(float32);
    };

    /// <summary>Runs the loop by hand with the pipeline's documented noise (ImageNoise) and clamp.</summary>
    private static Tensor ByHand(NoisePredictor eps, SamplerOptions options, long seed, int count)
    {
        using var noise = new ImageNoise(seed, 0, count, [1, 8, 8], CPU);
        using var x = SamplingLoop.Run(options.Create(Schedule), eps, noise.Initial(), noise.ForStep);
        return x.clamp(-1, 1);
    }

    [Theory]
    [InlineData(PredictionTarget.X0)]
    [InlineData(PredictionTarget.V)]
    public void An_x0_or_v_model_samples_as_its_explicit_eps_conversion_and_not_as_its_raw_output(PredictionTarget target)
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel();
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule, target));
        var options = new SamplerOptions();
        using var result = generator.Generate(new GenerationRequest { Count = 3, Seed = 7, Sampler = options });

        var converted = ByHand(ExplicitEps(model, target), options, 7, 3);
        var raw = ByHand((x, t) => model.forward(x, t), options, 7, 3);
        Assert.Equal(new long[] { 3, 1, 8, 8 }, result.Images.shape);
        Assert.True(MaxGap(result.Images, converted) < 1e-4f, $"{target}: pipeline vs explicit ε conversion differ by {MaxGap(result.Images, converted)}");
        Assert.True(MaxGap(result.Images, raw) > 0.05f, $"{target}: the pipeline's images equal those of the raw output fed as ε");
    }

    /// <summary>
    /// Image i depends only on (seed, i): its noise is the same bit for bit however the request is cut (next test), so
    /// images from batches of the same sizes are identical bit for bit, and from batches of other sizes identical up to
    /// float32 rounding: libtorch's CPU kernels block their sums by batch size (≈ 1e-6 here after 10 steps).
    /// </summary>
    [Fact]
    public void A_seeds_images_are_the_same_in_one_batch_in_several_and_over_index_ranges()
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel(classes: 2);
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        int[] labels = [0, 1, 0, 1, 0, 1, 0];
        var whole = new GenerationRequest { Count = 7, Seed = 3, Labels = labels, Guidance = 1.5, MaxBatchSize = 7 };
        using var one = generator.Generate(whole);
        using var batched = generator.Generate(whole with { MaxBatchSize = 3 });
        using var head = generator.Generate(whole with { Count = 3, Labels = labels[..3] });
        using var tail = generator.Generate(whole with { FirstIndex = 3, Count = 4, Labels = labels[3..], MaxBatchSize = 3 });
        using var single = generator.Generate(whole with { FirstIndex = 5, Count = 1, Labels = labels[5..6] });

        // The same batch shapes ([0,3) [3,6) [6,7)) as one request with batches of 3 or as two ranges: bit for bit.
        var ranges = cat([head.Images, tail.Images], 0);
        Assert.True(batched.Images.eq(ranges).all().item<bool>(), $"[0,3) + [3,7) differ from [0,7) in batches of 3 by {MaxGap(batched.Images, ranges)}");
        Assert.Equal(3, tail.FirstIndex);
        // Other batch sizes (7 at once; image 5 alone): the same images up to float32 rounding.
        Assert.True(MaxGap(one.Images, batched.Images) < 1e-5f, $"batches of 3 differ from one batch by {MaxGap(one.Images, batched.Images)}");
        Assert.True(MaxGap(one.Images[5], single.Images[0]) < 1e-5f, $"image 5 alone differs by {MaxGap(one.Images[5], single.Images[0])}");
        // Different images, and a different seed gives different images.
        Assert.True(MaxGap(one.Images[0], one.Images[2]) > 1e-2f);
        using var other = generator.Generate(whole with { Seed = 4 });
        Assert.True(MaxGap(one.Images, other.Images) > 1e-2f);
    }

    [Fact]
    public void Image_noise_depends_only_on_the_seed_and_the_image_index()
    {
        using var scope = NewDisposeScope();
        using var all = new ImageNoise(11, 0, 5, [1, 4, 4], CPU);
        using var part = new ImageNoise(11, 3, 2, [1, 4, 4], CPU);
        var xAll = all.Initial();
        var xPart = part.Initial();
        Assert.True(xAll.narrow(0, 3, 2).eq(xPart).all().item<bool>());
        // Step noise too, across a block boundary, also when a block is skipped (a sampler using noise only late).
        foreach (var step in new[] { 0, 9, 10, 25 })
            Assert.True(all.ForStep(step).narrow(0, 3, 2).eq(part.ForStep(step)).all().item<bool>(), $"step {step}");
        using var late = new ImageNoise(11, 3, 2, [1, 4, 4], CPU);
        late.Initial().Dispose();
        Assert.True(late.ForStep(25).eq(part.ForStep(25)).all().item<bool>());
        Assert.Throws<InvalidOperationException>(() => late.ForStep(3));
        // Distinct streams per image and per step; N(0, 1) overall.
        Assert.True(MaxGap(xAll[0], xAll[1]) > 0.1f);
        Assert.True(MaxGap(all.ForStep(25), all.ForStep(26)) > 0.1f);
        using var big = new ImageNoise(0, 0, 64, [1, 32, 32], CPU);
        var z = big.Initial().to(float64);
        Assert.InRange(z.mean().item<double>(), -0.02, 0.02); // 65,536 draws: standard error 0.004
        Assert.InRange(z.std().item<double>(), 0.98, 1.02);
        Assert.NotEqual(ImageNoise.StreamSeed(0, 1), ImageNoise.StreamSeed(1, 0));
    }

    [Fact]
    public void Progress_callbacks_see_every_step_of_every_batch_in_order_with_the_predicted_x0()
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel();
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        var request = new GenerationRequest { Count = 5, MaxBatchSize = 3, Sampler = new SamplerOptions { Steps = 4 } };
        var plan = generator.Plan(request);
        var seen = new List<(int Batch, int Index, int Timestep, long Done, long First, int Count)>();
        float lastGap = float.NaN;
        using var result = generator.Generate(request, s =>
        {
            seen.Add((s.Batch, s.Index, s.Timestep, s.Done, s.BatchFirstIndex, s.BatchCount));
            Assert.Equal(new long[] { s.BatchCount, 1, 8, 8 }, s.X.shape);
            // At t = 0 the ancestral mean is x̂_0 itself (ᾱ_{−1} = 1), so the last step's x equals its predicted x_0.
            if (s.Timestep == 0) lastGap = MaxGap(s.X, s.PredictedX0);
        });
        Assert.Equal(2, plan.Batches);
        Assert.Equal(new[] { 9, 6, 3, 0 }, plan.Timesteps);
        var expected = new List<(int, int, int, long, long, int)>();
        for (int b = 0; b < 2; b++)
            for (int i = 0; i < 4; i++) expected.Add((b, i, plan.Timesteps[i], b * 4 + i + 1, b * 3, b == 0 ? 3 : 2));
        Assert.Equal(expected, seen);
        Assert.True(lastGap < 1e-5f, $"x̂_0 at t = 0 differs from the sample by {lastGap}");
        Assert.Equal(8, result.Timings.StepSeconds.Count);
        Assert.True(result.Timings.TotalSeconds >= result.Timings.StepSeconds.Sum());
    }

    [Fact]
    public void Cancellation_stops_sampling_within_one_step()
    {
        using var scope = NewDisposeScope();
        // The loop itself: cancelled during step 3, the model is not called again.
        int calls = 0;
        using var cts = new CancellationTokenSource();
        var sampler = new SamplerOptions().Create(Schedule);
        var xT = randn(2, 1, 4, 4);
        Assert.Throws<OperationCanceledException>(() => SamplingLoop.Run(sampler, (x, t) => { calls++; return zeros_like(x); }, xT,
            _ => randn(2, 1, 4, 4), s => { if (s.Index == 3) cts.Cancel(); }, cts.Token));
        Assert.Equal(4, calls);

        // The pipeline: no step after the one that cancelled, in the first or a later batch.
        using var model = TinyModel();
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        foreach (var stopAt in new long[] { 3, 14 })
        {
            using var stop = new CancellationTokenSource();
            var done = new List<long>();
            Assert.ThrowsAny<OperationCanceledException>(() => generator.Generate(new GenerationRequest { Count = 4, MaxBatchSize = 2 }, s =>
            {
                done.Add(s.Done);
                if (s.Done == stopAt) stop.Cancel();
            }, stop.Token));
            Assert.Equal(stopAt, done.Count);
        }
        using var cancelled = new CancellationTokenSource();
        cancelled.Cancel();
        int steps = 0;
        Assert.ThrowsAny<OperationCanceledException>(() => generator.Generate(new GenerationRequest(), _ => steps++, cancelled.Token));
        Assert.Equal(0, steps);
    }

    [Fact]
    public void The_plan_rejects_bad_requests_naming_the_setting_and_estimates_memory()
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel();
        using var conditional = TinyModel(classes: 3);
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        using var guided = new ImageGenerator(conditional, new GaussianDiffusion(Schedule));
        void Rejects(ImageGenerator g, GenerationRequest r, string word) =>
            Assert.Contains(word, Assert.ThrowsAny<ArgumentException>(() => g.Plan(r)).Message);
        Rejects(generator, new GenerationRequest { Count = 0 }, "count");
        Rejects(generator, new GenerationRequest { FirstIndex = -1 }, "index");
        Rejects(generator, new GenerationRequest { MaxBatchSize = 0 }, "batch size");
        Rejects(generator, new GenerationRequest { Labels = [0] }, "class-conditional");
        Rejects(generator, new GenerationRequest { Guidance = 1 }, "guidance");
        Rejects(guided, new GenerationRequest { Labels = [3] }, "class 3");
        Rejects(guided, new GenerationRequest { Count = 2, Labels = [0] }, "labels");
        Rejects(guided, new GenerationRequest { Labels = [0], Guidance = double.NaN }, "guidance");
        Rejects(generator, new GenerationRequest { Sampler = new SamplerOptions { Steps = 11 } }, "steps");

        var small = guided.Plan(new GenerationRequest { Count = 1000, MaxBatchSize = 50 });
        var large = guided.Plan(new GenerationRequest { Count = 1000, MaxBatchSize = 100 });
        var withGuidance = guided.Plan(new GenerationRequest { Count = 1000, MaxBatchSize = 100, Labels = new int[1000], Guidance = 2 });
        Assert.Equal((20, 50), (small.Batches, small.BatchSize));
        Assert.Equal(2 * small.Memory.ActivationBytesPerBatch, large.Memory.ActivationBytesPerBatch);
        Assert.Equal(2 * large.Memory.ActivationBytesPerBatch, withGuidance.Memory.ActivationBytesPerBatch);
        Assert.Equal(conditional.ParameterCount() * 4, large.Memory.WeightBytes);
        Assert.Equal(1000L * 64 * 4, large.Memory.OutputBytes);
        Assert.True(large.Memory.DeviceBytes > large.Memory.WeightBytes + large.Memory.ActivationBytesPerBatch);
    }

    [Fact]
    public void Loading_a_checkpoint_uses_its_ema_weights_unless_told_not_to()
    {
        using var scope = NewDisposeScope();
        using var folder = new TempFolder();
        var config = new DdpmConfig { Diffusion = new DiffusionOptions { NumTimesteps = 10, BetaEnd = 0.2 }, Model = TestModels.Tiny(8) }.Validate();
        using var raw = new UNet(config.Model);
        using var ema = new UNet(config.Model);
        var path = folder.File("model.ckpt");
        Checkpoint.Save(path, raw, config, epoch: 1, step: 5, ema: ema);
        var request = new GenerationRequest { Count = 2, Seed = 1 };

        using var withEma = ImageGenerator.Load(path);
        using var withoutEma = ImageGenerator.Load(path, useEma: false);
        using var fromEma = new ImageGenerator(ema, config);
        Assert.True(withEma.UsesEma);
        Assert.False(withoutEma.UsesEma);
        Assert.Equal(5, withEma.Source!.Manifest!.Step);
        using var a = withEma.Generate(request);
        using var b = withoutEma.Generate(request);
        using var c = fromEma.Generate(request);
        Assert.True(a.Images.eq(c.Images).all().item<bool>(), "the loaded EMA weights sample differently from the EMA model");
        Assert.True(MaxGap(a.Images, b.Images) > 1e-2f, "EMA and raw weights gave the same images");
        using var bytes = a.ToBytes();
        Assert.Equal(ScalarType.Byte, bytes.dtype);
        Assert.True(((a.Images + 1) * 127.5 - bytes.to(float32)).abs().max().item<float>() <= 0.5f + 1e-4f);
    }
}
