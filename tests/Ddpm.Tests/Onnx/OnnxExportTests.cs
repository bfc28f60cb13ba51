using Ddpm.Configuration;
using Ddpm.Interop.Onnx;
using Ddpm.Onnx;
using Microsoft.ML.OnnxRuntime;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Ddpm.Tests.Onnx;

public sealed class OnnxExportTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("onnx-export");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    public static TheoryData<string> Families => new(OnnxFamilies.Names);

    /// <summary>The TorchSharp output and ONNX Runtime's for the same random inputs (timesteps across 0..T−1, labels
    /// with ∅).</summary>
    private (float[] Torch, float[][] Ort) Outputs(string family, params GraphOptimizationLevel[] optimizations)
    {
        var config = OnnxFamilies.Config(family);
        using var model = OnnxFamilies.RandomModel(config);
        var path = OnnxFamilies.Export(model, config, _dir);
        var m = config.Model;
        const int batch = 3;
        using var generator = new Generator(7);
        using var x = randn([batch, m.ImChannels, m.ImSize, m.ImSize], generator: generator);
        int T = config.Diffusion.NumTimesteps;
        var ts = Enumerable.Range(0, batch).Select(i => (long)(i * (T - 1) / Math.Max(1, batch - 1))).ToArray();
        var ys = m.NumClasses > 0 ? Enumerable.Range(0, batch).Select(i => (long)(i % (m.NumClasses + 1))).ToArray() : [];
        float[] expected;
        using (no_grad())
        using (var t = tensor(ts))
        using (var y = ys.Length > 0 ? tensor(ys) : null)
        using (var result = model.forward(x, t, y))
            expected = result.data<float>().ToArray();
        var outputs = optimizations.Select(optimization =>
        {
            using var denoiser = OnnxDenoiser.Load(path, new OnnxSessionSettings { Optimization = optimization, IntraOpThreads = 1 });
            var actual = new float[expected.Length];
            denoiser.Forward(x.data<float>().ToArray(), ts, ys, actual);
            return actual;
        }).ToArray();
        return (expected, outputs);
    }

    [Theory]
    [MemberData(nameof(Families))]
    public void An_exported_model_computes_what_the_TorchSharp_model_does_within_1e_4_relative(string family)
    {
        var (expected, outputs) = Outputs(family, GraphOptimizationLevel.ORT_ENABLE_ALL);
        var actual = outputs[0];
        double error = OnnxFamilies.RelativeError(actual, expected);
        output.WriteLine($"{family}: max relative error {error:E2} over {expected.Length} values");
        Assert.True(error < 1e-4, $"{family}: max |ORT − TorchSharp| / max |TorchSharp| = {error:E3}");
    }

    [Fact]
    public void An_exported_model_opens_and_runs_with_all_graph_optimisations_off_and_on()
    {
        var (expected, outputs) = Outputs("quick", GraphOptimizationLevel.ORT_DISABLE_ALL, GraphOptimizationLevel.ORT_ENABLE_ALL);
        var (off, on) = (outputs[0], outputs[1]);
        Assert.True(OnnxFamilies.RelativeError(off, expected) < 1e-4, "the graph as written disagrees with TorchSharp");
        Assert.True(OnnxFamilies.RelativeError(on, expected) < 1e-4, "the optimised graph disagrees with TorchSharp");
        Assert.True(OnnxFamilies.RelativeError(on, off) < 1e-5, "optimised and unoptimised graphs disagree");
    }

    [Fact]
    public void The_metadata_carries_the_prediction_betas_shape_and_classes_and_the_generator_reads_them()
    {
        var config = OnnxFamilies.Config("v-conditional");
        using var model = OnnxFamilies.RandomModel(config);
        var path = OnnxFamilies.Export(model, config, _dir);
        using var denoiser = OnnxDenoiser.Load(path);
        var info = denoiser.Info;
        Assert.Equal(PredictionType.V, info.Prediction);
        Assert.Equal(Ddpm.Diffusion.NoiseSchedule.FromOptions(config.Diffusion).Betas, info.Betas); // bit for bit ("R" format)
        Assert.Equal((1, 16, 16), (info.Channels, info.Height, info.Width));
        Assert.Equal(3, info.NumClasses);
        Assert.Equal(3, info.NullLabel);
        Assert.Equal("test", info.Source);
        Assert.Equal(config.Diffusion, DdpmConfig.Parse(info.Config!).Diffusion);
        // An unconditional model has no labels input, and the generator refuses labels for it.
        var plain = OnnxFamilies.Config("no-attention");
        using var unconditional = OnnxFamilies.RandomModel(plain);
        Directory.CreateDirectory(Path.Combine(_dir, "plain"));
        using var generator = OnnxImageGenerator.Load(OnnxFamilies.Export(unconditional, plain, Path.Combine(_dir, "plain")));
        Assert.Equal(PredictionType.Epsilon, generator.Info.Prediction);
        Assert.False(generator.Info.IsConditional);
        var e = Assert.Throws<ArgumentException>(() => generator.Plan(new GenerationRequest { Count = 1, Labels = [0] }));
        Assert.Contains("unconditional", e.Message);
    }

    [Fact]
    public void A_file_that_is_not_an_exported_model_is_refused_with_one_clear_message()
    {
        var junk = Path.Combine(_dir, "junk.onnx");
        File.WriteAllText(junk, "not a model");
        var e = Assert.Throws<InvalidDataException>(() => OnnxDenoiser.Load(junk));
        Assert.Contains("junk.onnx", e.Message);
        Assert.Throws<FileNotFoundException>(() => OnnxDenoiser.Load(Path.Combine(_dir, "missing.onnx")));
    }
}
