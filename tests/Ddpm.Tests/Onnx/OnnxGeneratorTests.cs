using Ddpm.Configuration;
using Ddpm.Sampling;
using static TorchSharp.torch;
using Ort = Ddpm.Onnx;

namespace Ddpm.Tests.Onnx;

/// <summary>
/// The ONNX Runtime generator against the TorchSharp pipeline (ImageGenerator) on the same model and the same noise
/// (ImageNoise's per-image streams fed to the ORT generator): the byte images agree within quantisation.
/// </summary>
public sealed class OnnxGeneratorTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("onnx-generator");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    /// <summary>TorchSharp's ImageNoise as an ORT noise source: one ImageNoise per batch, as ImageGenerator draws
    /// them.</summary>
    internal sealed class TorchNoise(long seed, long[] imageShape) : Ort.Sampling.INoiseSource, IDisposable
    {
        private ImageNoise? _batch;

        public void Initial(long firstImage, int count, Span<float> destination)
        {
            _batch?.Dispose();
            _batch = new ImageNoise(seed, firstImage, count, imageShape, CPU);
            using var x = _batch.Initial();
            x.data<float>().CopyTo(destination);
        }

        public void Step(long firstImage, int count, int step, Span<float> destination)
        {
            using var z = _batch!.ForStep(step).contiguous();
            z.data<float>().CopyTo(destination);
        }

        public void Dispose() => _batch?.Dispose();
    }

    public static TheoryData<string> Cases => new() { "quick-dpmpp-sde-clip", "v-guided-ddim", "rgb-x0-ddpm-clip" };

    [Theory]
    [MemberData(nameof(Cases))]
    public void The_ORT_generator_makes_the_TorchSharp_pipelines_images_for_the_same_noise(string name)
    {
        var (family, request) = name switch
        {
            "quick-dpmpp-sde-clip" => ("quick", new GenerationRequest { Count = 5, Seed = 3, MaxBatchSize = 3, Sampler = new SamplerOptions { Kind = SamplerKind.DpmSolver2MSde, ClipX0 = true } }),
            "v-guided-ddim" => ("v-conditional", new GenerationRequest
            {
                Count = 4, Seed = 9, Labels = [0, 1, 2, 1], Guidance = 2,
                Sampler = new SamplerOptions { Kind = SamplerKind.Ddim, Steps = 12, Eta = 0.5 },
            }),
            "rgb-x0-ddpm-clip" => ("rgb-x0", new GenerationRequest
            {
                Count = 3, Seed = 1, Sampler = new SamplerOptions { Kind = SamplerKind.Ddpm, Steps = 10, ClipX0 = true },
            }),
            _ => throw new ArgumentException(name),
        };
        var config = OnnxFamilies.Config(family);
        using var model = Small(OnnxFamilies.Config(family));
        var path = OnnxFamilies.Export(model, config, _dir);
        byte[] expected;
        using (var torch = new ImageGenerator(model, config))
        using (var result = torch.Generate(request))
        using (var bytes = result.ToBytes())
            expected = bytes.data<byte>().ToArray();

        var m = config.Model;
        using var noise = new TorchNoise(request.Seed, [m.ImChannels, m.ImSize, m.ImSize]);
        using var ort = Ort.OnnxImageGenerator.Load(path, new Ort.OnnxSessionSettings { IntraOpThreads = 1 });
        var s = request.Sampler;
        var ortRequest = new Ort.GenerationRequest
        {
            Count = request.Count, Seed = request.Seed, MaxBatchSize = request.MaxBatchSize ?? request.Count, Labels = request.Labels, Guidance = request.Guidance,
            Noise = noise,
            Sampler = new Ort.Sampling.SamplerSettings
            {
                Kind = s.Kind switch
                {
                    SamplerKind.Ddpm => Ort.Sampling.SamplerKind.Ddpm,
                    SamplerKind.Ddim => Ort.Sampling.SamplerKind.Ddim,
                    SamplerKind.DpmSolver2MSde => Ort.Sampling.SamplerKind.DpmSolver2MSde,
                    _ => throw new ArgumentException(s.Kind.ToString()),
                },
                Steps = s.Steps, Eta = s.Eta, ClipX0 = s.ClipX0,
            },
        };
        int frames = 0;
        var actual = ort.Generate(ortRequest, step => frames++).ToBytes();
        Assert.Equal(expected.Length, actual.Length);
        int maxDiff = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        int differing = expected.Zip(actual, (a, b) => a != b ? 1 : 0).Sum();
        Assert.True(maxDiff <= 1, $"{name}: {differing} of {expected.Length} pixels differ, by up to {maxDiff} levels (quantisation allows 1)");
        int batch = request.MaxBatchSize ?? request.Count, batches = (request.Count + batch - 1) / batch;
        Assert.Equal(batches * ort.Plan(ortRequest).Count, frames);
        // Not a flat image: the comparison is of real content.
        Assert.True(expected.Distinct().Count() > 20, $"{name}: the images hold only {expected.Distinct().Count()} distinct levels");
    }

    /// <summary>
    /// A random model whose output has unit standard deviation on noise (default init plus N(0, 0.02²), conv_out
    /// rescaled), like a trained ε-network's, so the images are not saturated at ±1.
    /// </summary>
    internal static Ddpm.Models.UNet Small(DdpmConfig config)
    {
        var model = new Ddpm.Models.UNet(config.Model);
        using var generator = new Generator(5);
        using (no_grad())
            foreach (var p in model.parameters())
                using (var noise = randn(p.shape, generator: generator))
                    p.add_(noise * 0.02);
        model.eval();
        using (no_grad())
        {
            var m = config.Model;
            using var x = randn([8, m.ImChannels, m.ImSize, m.ImSize], generator: generator);
            using var t = full(8, (long)config.Diffusion.NumTimesteps / 2);
            using var y = m.NumClasses > 0 ? full(8, (long)m.NumClasses) : null;
            using var output = model.forward(x, t, y);
            double scale = 1 / output.std().item<float>();
            foreach (var (name, p) in model.named_parameters())
                if (name.StartsWith("conv_out.", StringComparison.Ordinal)) p.mul_(scale);
        }
        return model;
    }
}
