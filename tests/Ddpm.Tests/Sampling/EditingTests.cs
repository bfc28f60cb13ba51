using Ddpm.Configuration;
using Ddpm.Diffusion;
using Ddpm.Imaging;
using Ddpm.Models;
using Ddpm.Sampling;
using Ddpm.Tests.Models;
using static TorchSharp.torch;

namespace Ddpm.Tests.Sampling;

/// <summary>The pipeline's edits: inpainting (RePaint), image-to-image (SDEdit) and interpolation, on a tiny untrained
/// U-Net.</summary>
public class EditingTests
{
    private static readonly NoiseSchedule Schedule = NoiseSchedule.Linear(10, 1e-4, 0.2);

    private static UNet TinyModel(int classes = 0) => new(TestModels.Tiny(8) with { NumClasses = classes });

    private static float MaxGap(Tensor a, Tensor b) => (a - b).abs().max().item<float>();

    private static bool Same(Tensor a, Tensor b) => a.eq(b).all().item<bool>();

    /// <summary>Three 8×8 inputs on the 256 levels a PNG holds: a ramp, its negative, a checkerboard.</summary>
    private static Tensor Inputs()
    {
        var ramp = arange(64, dtype: float32).reshape(1, 1, 8, 8) * (255.0 / 63.0);
        var checker = (arange(8).reshape(8, 1) + arange(8).reshape(1, 8)).remainder(2).to(float32).reshape(1, 1, 8, 8) * 255;
        return cat([ramp.round(), (255 - ramp).round(), checker], 0) / 127.5 - 1;
    }

    /// <summary>Keep the top half (rows 0–3) of every input.</summary>
    private static Tensor TopHalf()
    {
        var mask = zeros(1, 1, 8, 8);
        mask[.., .., ..4, ..] = 1;
        return mask;
    }

    public static TheoryData<string, double, int> AllSamplers() => new()
    {
        { "ddpm", 0, 0 }, { "ddpm", 0, 5 }, { "ddim", 0, 4 }, { "ddim", 1, 4 }, { "dpmpp-2m", 0, 4 }, { "dpmpp-2m-sde", 0, 4 }, { "unipc", 0, 4 },
    };

    private static SamplerOptions Sampler(string kind, double eta, int steps)
    {
        Assert.True(EnumNames.TryParse<SamplerKind>(kind, out var k));
        return new SamplerOptions { Kind = k, Eta = eta, Steps = steps == 0 ? null : steps };
    }

    [Theory]
    [MemberData(nameof(AllSamplers))]
    public void Inpainting_keeps_the_known_pixels_exactly_and_changes_the_rest_for_every_sampler(string kind, double eta, int steps)
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel();
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        var known = Inputs();
        var mask = TopHalf();
        var request = new GenerationRequest
        {
            Count = 6, Seed = 2, Sampler = Sampler(kind, eta, steps), Inpainting = new Inpainting { Known = known, Mask = mask },
        };
        using var result = generator.Generate(request);
        var expected = cat([known, known], 0); // image i completes input i mod 3
        var kept = result.Images.narrow(2, 0, 4);
        Assert.True(Same(Pixels.ToBytes(kept), Pixels.ToBytes(expected.narrow(2, 0, 4))), $"{kind}: kept pixels changed");
        Assert.True(MaxGap(result.Images.narrow(2, 4, 4), expected.narrow(2, 4, 4)) > 0.1f, $"{kind}: the inpainted half is the input's");
        // Images 0 and 3 complete the same input from different noise.
        Assert.True(MaxGap(result.Images[0], result.Images[3]) > 1e-2f);
    }

    [Theory]
    [InlineData("ddpm", 0, 0)]
    [InlineData("ddim", 0, 6)]
    [InlineData("ddim", 1, 6)]
    public void Resampling_keeps_the_known_pixels_calls_the_model_as_repaint_schedules_and_changes_the_completion(string kind, double eta, int steps)
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel();
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        var known = Inputs();
        var naive = new GenerationRequest
        {
            Count = 3, Seed = 5, Sampler = Sampler(kind, eta, steps), Inpainting = new Inpainting { Known = known, Mask = TopHalf() },
        };
        var resampled = naive with { Inpainting = naive.Inpainting with { Resamplings = 3, JumpLength = 2 } };
        int s = steps == 0 ? Schedule.T : steps;
        var plan = generator.Plan(resampled);
        Assert.Equal(RePaintSchedule.ModelCalls(s, 2, 3), plan.Timesteps.Count);
        Assert.Equal(s + 2 * 2 * ((s - 2 + 1) / 2), plan.Timesteps.Count);
        int calls = 0;
        using var a = generator.Generate(naive);
        using var b = generator.Generate(resampled, _ => calls++);
        Assert.Equal(plan.Timesteps.Count, calls);
        Assert.True(Same(Pixels.ToBytes(b.Images.narrow(2, 0, 4)), Pixels.ToBytes(known.narrow(2, 0, 4))));
        Assert.True(MaxGap(a.Images.narrow(2, 4, 4), b.Images.narrow(2, 4, 4)) > 1e-2f, "resampling left the completion as it was");
    }

    [Fact]
    public void The_repaint_schedule_walks_every_stretch_r_times_and_plain_replacement_once()
    {
        Assert.Equal(Enumerable.Range(0, 7), RePaintSchedule.Moves(7, 3, 1).Select(m => m.Step));
        Assert.All(RePaintSchedule.Moves(7, 3, 1), m => Assert.Null(m.JumpTo));
        foreach (var (s, j, r) in new[] { (10, 2, 3), (10, 3, 4), (20, 5, 10), (4, 1, 2), (5, 4, 3) })
        {
            var moves = RePaintSchedule.Moves(s, j, r);
            Assert.Equal(RePaintSchedule.ModelCalls(s, j, r), moves.Count);
            int state = 0;
            var walks = new int[s];
            foreach (var m in moves)
            {
                Assert.Equal(state, m.Step); // each step starts where the run is
                walks[m.Step]++;
                state = m.Step + 1;
                if (m.JumpTo is { } to)
                {
                    Assert.Equal(state - j, to); // back j states, from a state S − 1 − i·j
                    Assert.Equal(0, (s - 1 - state) % j);
                    state = to;
                }
            }
            Assert.Equal(s, state);
            // Jump points are states S − 1, S − 1 − j, … that have j states above them; the j steps below each
            // (disjoint stretches) are walked r times, every other step once.
            var points = Enumerable.Range(0, s).Where(i => i >= j && (s - 1 - i) % j == 0).ToList();
            for (int k = 0; k < s; k++)
                Assert.Equal(points.Any(i => i - j <= k && k < i) ? r : 1, walks[k]);
            Assert.Equal(1, walks[s - 1]);
        }
        Assert.Equal(4 + 1 * 1 * 3, RePaintSchedule.Moves(4, 1, 2).Count); // 0,0,1,1,2,2,3
    }

    [Fact]
    public void A_mask_that_keeps_everything_returns_the_input_and_one_that_keeps_nothing_samples_from_noise()
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel(classes: 2);
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        var known = Inputs();
        foreach (var sampler in new[] { new SamplerOptions(), new SamplerOptions { Kind = SamplerKind.DpmSolver2MSde, Steps = 5 } })
        {
            var sample = new GenerationRequest { Count = 3, Seed = 9, Sampler = sampler, Labels = [0, 1, 1], Guidance = 1.5 };
            using var all = generator.Generate(sample with
            {
                Inpainting = new Inpainting { Known = known, Mask = ones(1, 1, 8, 8), AllowTrivialMask = true },
            });
            Assert.True(Same(all.Images, known), "an all-keep mask changed the input");
            using var none = generator.Generate(sample with
            {
                Inpainting = new Inpainting { Known = known, Mask = zeros(3, 1, 8, 8), AllowTrivialMask = true, Resamplings = 1 },
            });
            using var plain = generator.Generate(sample);
            Assert.True(Same(none.Images, plain.Images), $"a keep-nothing mask differs from sampling by {MaxGap(none.Images, plain.Images)}");
        }
    }

    [Theory]
    [MemberData(nameof(AllSamplers))]
    public void Strength_one_is_sampling_from_noise_with_the_same_seed(string kind, double eta, int steps)
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel();
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        var sample = new GenerationRequest { Count = 4, Seed = 3, Sampler = Sampler(kind, eta, steps) };
        using var plain = generator.Generate(sample);
        using var edited = generator.Generate(sample with { ImageToImage = new ImageToImage { Images = Inputs(), Strength = 1 } });
        Assert.True(Same(plain.Images, edited.Images), $"{kind}: strength 1 differs from sampling by {MaxGap(plain.Images, edited.Images)}");
        Assert.Equal(plain.Timesteps, edited.Timesteps);
    }

    [Fact]
    public void Strength_near_zero_returns_the_input_up_to_the_first_timesteps_noise()
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel();
        var diffusion = new GaussianDiffusion(Schedule);
        using var generator = new ImageGenerator(model, diffusion);
        var inputs = Inputs();
        var request = new GenerationRequest
        {
            Count = 3, Seed = 4, Sampler = new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 5 },
            ImageToImage = new ImageToImage { Images = inputs, Strength = 1e-6 },
        };
        Assert.Equal(new[] { 0 }, generator.Plan(request).Timesteps); // the grid's last step, t = 0
        using var result = generator.Generate(request);

        // DDIM's one step from x_0' = √ᾱ_0 x + √(1 − ᾱ_0) z at t = 0 returns x̂_0 = (x_0' − √(1 − ᾱ_0) ε)/√ᾱ_0
        // = x + √(1 − ᾱ_0)(z − ε)/√ᾱ_0: the input, off by σ_0 = 0.01 times the model's error in ε.
        using var noise = new ImageNoise(4, 0, 3, [1, 8, 8], CPU);
        var z = noise.Initial();
        double a = Schedule.AlphasCumprod[0];
        var start = Math.Sqrt(a) * inputs + Math.Sqrt(1 - a) * z;
        Tensor eps;
        using (no_grad()) eps = model.forward(start, zeros(3, dtype: int64));
        var oracle = ((start - Math.Sqrt(1 - a) * eps) / Math.Sqrt(a)).clamp(-1, 1);
        Assert.True(MaxGap(result.Images, oracle) < 1e-5f, $"differs from the one-step oracle by {MaxGap(result.Images, oracle)}");
        double bound = Math.Sqrt(1 - a) / Math.Sqrt(a) * (z - eps).abs().max().item<float>();
        Assert.True(MaxGap(result.Images, inputs) <= bound + 1e-6, $"the output is {MaxGap(result.Images, inputs)} from the input, bound {bound}");
        Assert.True(bound < 0.1, $"σ_0·|z − ε| = {bound}");
    }

    [Fact]
    public void Image_to_image_starts_on_the_samplers_own_grid_at_the_largest_timestep_not_above_s_T()
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel();
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        GenerationRequest Edit(SamplerOptions sampler, double s) =>
            new() { Sampler = sampler, ImageToImage = new ImageToImage { Images = Inputs(), Strength = s } };
        Assert.Equal(new[] { 4, 3, 2, 1, 0 }, generator.Plan(Edit(new SamplerOptions(), 0.5)).Timesteps);
        Assert.Equal(new[] { 2, 1, 0 }, generator.Plan(Edit(new SamplerOptions(), 0.3)).Timesteps);
        var ddim4 = new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 4 }; // grid 9, 6, 3, 0
        Assert.Equal(new[] { 3, 0 }, generator.Plan(Edit(ddim4, 0.5)).Timesteps);
        Assert.Equal(new[] { 6, 3, 0 }, generator.Plan(Edit(ddim4, 0.7)).Timesteps);
        Assert.Equal(new[] { 9, 6, 3, 0 }, generator.Plan(Edit(ddim4, 1)).Timesteps);

        // A deterministic tail from x at step k of a whole run ends where the whole run ends.
        var whole = ddim4.Create(Schedule);
        var tail = ddim4.Create(Schedule, 2);
        Assert.Equal(new[] { 3, 0 }, tail.Timesteps);
        NoisePredictor eps = (x, t) => model.forward(x, t);
        Tensor? atStep2 = null;
        using var end = SamplingLoop.Run(whole, eps, randn(2, 1, 8, 8, generator: new TorchSharp.torch.Generator(1)), _ => null!,
            s => { if (s.Index == 1) atStep2 = s.Next.clone().DetachFromDisposeScope(); });
        using var fromTail = SamplingLoop.Run(tail, eps, atStep2!, _ => null!);
        Assert.True(MaxGap(end, fromTail) < 1e-6f);
        // The respaced chain's lower part has the whole chain's betas there.
        var respaced = (RespacedDdpmSampler)new SamplerOptions { Steps = 5 }.Create(Schedule);
        var lower = (RespacedDdpmSampler)new SamplerOptions { Steps = 5 }.Create(Schedule, 2);
        Assert.Equal(respaced.Respaced.Betas[..3], lower.Respaced.Betas);
    }

    [Theory]
    [InlineData("ddim", 0, 5, false)]
    [InlineData("ddpm", 0, 0, false)]
    [InlineData("dpmpp-2m-sde", 0, 6, true)]
    public void Interpolation_ends_are_the_two_seeds_samples_and_the_frames_between_differ(string kind, double eta, int steps, bool classes)
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel(classes: 2);
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        var sampler = Sampler(kind, eta, steps);
        var path = new Interpolation { Frames = 5, FromIndex = 2, ToSeed = 8, ToIndex = 1, FromClass = classes ? 0 : null, ToClass = classes ? 1 : null };
        double w = classes ? 1.5 : 0;
        using var frames = generator.Generate(new GenerationRequest { Count = 5, Seed = 6, Sampler = sampler, Interpolation = path, Guidance = w });
        using var from = generator.Generate(new GenerationRequest
        {
            Count = 1, FirstIndex = 2, Seed = 6, Sampler = sampler, Labels = classes ? [0] : null, Guidance = w,
        });
        using var to = generator.Generate(new GenerationRequest
        {
            Count = 1, FirstIndex = 1, Seed = 8, Sampler = sampler, Labels = classes ? [1] : null, Guidance = w,
        });
        // Equal up to float32 rounding of the different batch shapes (as across batch sizes).
        Assert.True(MaxGap(frames.Images[0], from.Images[0]) < 1e-5f, $"frame 0 differs from seed 6's image 2 by {MaxGap(frames.Images[0], from.Images[0])}");
        Assert.True(MaxGap(frames.Images[4], to.Images[0]) < 1e-5f, $"frame 4 differs from seed 8's image 1 by {MaxGap(frames.Images[4], to.Images[0])}");
        Assert.True(MaxGap(frames.Images[2], from.Images[0]) > 1e-2f && MaxGap(frames.Images[2], to.Images[0]) > 1e-2f);

        // Frames split over index ranges are the same frames.
        using var tail = generator.Generate(new GenerationRequest { FirstIndex = 3, Count = 2, Seed = 6, Sampler = sampler, Interpolation = path, Guidance = w });
        Assert.True(MaxGap(frames.Images.narrow(0, 3, 2), tail.Images) < 1e-5f);
    }

    [Fact]
    public void Slerp_keeps_the_ends_exactly_and_the_norm_between_orthogonal_noises()
    {
        using var scope = NewDisposeScope();
        var g = new TorchSharp.torch.Generator(3);
        var a = randn(1, 1, 64, 64, generator: g);
        var b = randn(1, 1, 64, 64, generator: g);
        var path = Slerp.Interpolate(a, b, [0, 0.25, 0.5, 1]);
        Assert.True(Same(path[0], a[0]) && Same(path[3], b[0]));
        double na = a.norm().item<float>(), nb = b.norm().item<float>(), mid = path[2].norm().item<float>();
        Assert.InRange(mid, 0.97 * Math.Min(na, nb), 1.03 * Math.Max(na, nb)); // linear interpolation would give ≈ 0.71
        var same = Slerp.Interpolate(a, a, [0.5]);
        Assert.True(MaxGap(same[0], a[0]) < 1e-5f);
    }

    [Fact]
    public void Image_i_of_an_edit_is_the_same_in_any_batch_and_index_range()
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel();
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        var inpaint = new GenerationRequest
        {
            Count = 5, Seed = 1, Sampler = new SamplerOptions { Steps = 6 },
            Inpainting = new Inpainting { Known = Inputs(), Mask = TopHalf(), Resamplings = 2, JumpLength = 2 },
        };
        var edit = new GenerationRequest { Count = 5, Seed = 1, ImageToImage = new ImageToImage { Images = Inputs(), Strength = 0.6 } };
        foreach (var request in new[] { inpaint, edit })
        {
            using var whole = generator.Generate(request);
            using var batched = generator.Generate(request with { MaxBatchSize = 2 });
            using var part = generator.Generate(request with { FirstIndex = 3, Count = 2 });
            Assert.True(MaxGap(whole.Images, batched.Images) < 1e-5f, $"{request.Kind}: batches of 2 differ by {MaxGap(whole.Images, batched.Images)}");
            Assert.True(MaxGap(whole.Images.narrow(0, 3, 2), part.Images) < 1e-5f, $"{request.Kind}: images 3, 4 alone differ");
        }
    }

    [Fact]
    public void The_plan_refuses_bad_edits_naming_the_input_and_the_problem()
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel();
        using var conditional = TinyModel(classes: 2);
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        using var classed = new ImageGenerator(conditional, new GaussianDiffusion(Schedule));
        void Rejects(ImageGenerator g, GenerationRequest r, string words)
        {
            var message = Assert.ThrowsAny<ArgumentException>(() => g.Plan(r)).Message;
            Assert.Contains(words, message);
        }
        var known = Inputs();
        GenerationRequest Fill(Tensor k, Tensor m, int r = 1, int j = 10, SamplerOptions? s = null) =>
            new() { Sampler = s ?? new SamplerOptions(), Inpainting = new Inpainting { Known = k, Mask = m, Resamplings = r, JumpLength = j } };
        Rejects(generator, Fill(zeros(1, 1, 16, 16), TopHalf()), "inpainting: the known images are [1, 1, 16, 16]");
        Rejects(generator, Fill(zeros(1, 3, 8, 8), TopHalf()), "[1, 3, 8, 8]");
        Rejects(generator, Fill(known * 2, TopHalf()), "must lie in [-1, 1]");
        Rejects(generator, Fill(known, ones(1, 1, 16, 16)), "the mask is [1, 1, 16, 16]");
        Rejects(generator, Fill(known, ones(2, 1, 8, 8)), "the mask is [2, 1, 8, 8]");
        Rejects(generator, Fill(known, TopHalf() * 0.5), "only 0 (inpaint) and 1 (keep)");
        Rejects(generator, Fill(known, ones(1, 1, 8, 8)), "keeps every pixel");
        Rejects(generator, Fill(known, zeros(1, 1, 8, 8)), "keeps no pixel");
        Rejects(generator, Fill(known, cat([TopHalf(), zeros(1, 1, 8, 8), TopHalf()], 0)), "mask 1 keeps no pixel");
        Rejects(generator, Fill(known, TopHalf(), r: 0), "resamplings");
        Rejects(generator, Fill(known, TopHalf(), r: 2, j: 10), "jump length 10 must be below the sampler's 10 steps");
        Rejects(generator, Fill(known, TopHalf(), r: 2, j: 2, s: new SamplerOptions { Kind = SamplerKind.UniPc }), "resampling needs a single-step sampler");
        Rejects(generator, Fill(known, TopHalf(), r: 2, j: 2, s: new SamplerOptions { Kind = SamplerKind.DpmSolver2MSde }), "dpmpp-2m-sde");

        GenerationRequest Edit(Tensor images, double s) => new() { ImageToImage = new ImageToImage { Images = images, Strength = s } };
        foreach (var s in new[] { 0, -0.5, 1.01, double.NaN })
            Rejects(generator, Edit(known, s), "image-to-image: the strength must lie in (0, 1]");
        Rejects(generator, Edit(zeros(2, 1, 8, 9), 0.5), "image-to-image: the input images are [2, 1, 8, 9]");
        Rejects(generator, Edit(full(1, 1, 8, 8, double.NaN), 0.5), "NaN");

        Rejects(generator, new GenerationRequest { Count = 3, Interpolation = new Interpolation { Frames = 1 } }, "frames must be >= 2");
        Rejects(generator, new GenerationRequest { Count = 3, FirstIndex = 2, Interpolation = new Interpolation { Frames = 4 } }, "images 2..4 asked of a path of 4 frames");
        Rejects(generator, new GenerationRequest { Interpolation = new Interpolation { FromClass = 0, ToClass = 1 } }, "class-conditional");
        Rejects(classed, new GenerationRequest { Interpolation = new Interpolation { FromClass = 0 } }, "both end classes or neither");
        Rejects(classed, new GenerationRequest { Interpolation = new Interpolation { FromClass = 0, ToClass = 2 } }, "class 2");
        Rejects(classed, new GenerationRequest { Labels = [0], Interpolation = new Interpolation() }, "not a label per image");
        Rejects(classed, new GenerationRequest { Guidance = 1, Interpolation = new Interpolation() }, "guidance needs class labels");
        Rejects(generator, Fill(known, TopHalf()) with { ImageToImage = new ImageToImage { Images = known } }, "asks for several");
        // With classes, a guided interpolation between two of them makes three forward passes' worth of activations.
        var plain = classed.Plan(new GenerationRequest { Count = 4, Interpolation = new Interpolation { Frames = 4 } });
        var mixed = classed.Plan(new GenerationRequest { Count = 4, Guidance = 1, Interpolation = new Interpolation { Frames = 4, FromClass = 0, ToClass = 1 } });
        Assert.Equal(3 * plain.Memory.ActivationBytesPerBatch, mixed.Memory.ActivationBytesPerBatch);
    }
    [Fact]
    public void A_deterministic_interpolation_moves_a_little_from_frame_to_frame()
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel();
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        var path = new Interpolation { Frames = 9, ToSeed = 1 };
        using var frames = generator.Generate(new GenerationRequest
        {
            Count = 9, Seed = 0, Sampler = new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 5 }, Interpolation = path,
        });
        float Gap(int a, int b) => (frames.Images[a] - frames.Images[b]).abs().mean().item<float>();
        float ends = Gap(0, 8);
        var steps = Enumerable.Range(0, 8).Select(i => Gap(i, i + 1)).ToArray();
        Assert.True(ends > 0.05f, $"the ends differ by only {ends}");
        Assert.All(steps, g => Assert.True(g < ends / 2, $"a step of {g} against {ends} between the ends: [{string.Join(", ", steps)}]"));
    }

    [Fact]
    public void Cancelling_an_edit_stops_it_within_one_model_call()
    {
        using var scope = NewDisposeScope();
        using var model = TinyModel();
        using var generator = new ImageGenerator(model, new GaussianDiffusion(Schedule));
        var request = new GenerationRequest
        {
            Count = 4, MaxBatchSize = 2, Inpainting = new Inpainting { Known = Inputs(), Mask = TopHalf(), Resamplings = 3, JumpLength = 2 },
        };
        long total = generator.Plan(request).TotalSteps;
        using var stop = new CancellationTokenSource();
        var done = new List<long>();
        Assert.ThrowsAny<OperationCanceledException>(() => generator.Generate(request, s =>
        {
            done.Add(s.Done);
            if (s.Done == total / 2 + 1) stop.Cancel();
        }, stop.Token));
        Assert.Equal(total / 2 + 1, done.Count);
    }
}
