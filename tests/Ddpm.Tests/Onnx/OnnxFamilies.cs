using Ddpm.Configuration;
using Ddpm.Interop.Onnx;
using Ddpm.Models;
using static TorchSharp.torch;

namespace Ddpm.Tests.Onnx;

/// <summary>
/// The model families the exporter must cover: the seed's U-Net, the CPU preset (narrow, class-conditional, attention
/// only on the inner levels), a deeper one, one without attention levels, an RGB x_0 model with one down-sampling and a
/// v model. Weights are random (GroupNorm's affine too), so every parameter shows in the output.
/// </summary>
internal static class OnnxFamilies
{
    public static readonly string[] Names = ["seed", "quick", "deeper", "no-attention", "rgb-x0", "v-conditional"];

    public static DdpmConfig Config(string family)
    {
        var tiny = Models.TestModels.Tiny();
        return family switch
        {
            "seed" => new DdpmConfig(),
            "quick" => DdpmConfig.Load(Path.Combine(TestPaths.RepoRoot, "configs", "quick.yaml")),
            "deeper" => new DdpmConfig
            {
                Model = tiny with { NumDownLayers = 3, NumMidLayers = 2, NumUpLayers = 3, DownChannels = [8, 16, 24, 32], MidChannels = [32, 24, 24] },
                Diffusion = new DiffusionOptions { NumTimesteps = 50 },
            },
            "no-attention" => new DdpmConfig { Model = tiny with { AttentionLevels = [false, false, false] }, Diffusion = new DiffusionOptions { NumTimesteps = 40 } },
            "rgb-x0" => new DdpmConfig
            {
                Model = tiny with { ImChannels = 3, ImSize = 12, DownSample = [true, false, false], NumHeads = 2 },
                Diffusion = new DiffusionOptions { NumTimesteps = 30, Schedule = ScheduleKind.Cosine, Prediction = PredictionTarget.X0 },
            },
            "v-conditional" => new DdpmConfig
            {
                Model = tiny with { NumClasses = 3, AttentionLevels = [true, false, true] },
                Diffusion = new DiffusionOptions { NumTimesteps = 60, Prediction = PredictionTarget.V },
            },
            _ => throw new ArgumentException(family),
        };
    }

    /// <summary>A U-Net of <paramref name="config"/> with every parameter perturbed by N(0, 0.1²) (seeded), in eval
    /// mode.</summary>
    public static UNet RandomModel(DdpmConfig config, int seed = 0)
    {
        var model = new UNet(config.Model);
        using var generator = new TorchSharp.torch.Generator((ulong)seed + 1);
        using (no_grad())
            foreach (var p in model.parameters())
                using (var noise = randn(p.shape, generator: generator))
                    p.add_(noise * 0.1);
        model.eval();
        return model;
    }

    /// <summary>Exports <paramref name="model"/> into <paramref name="dir"/>/model.onnx.</summary>
    public static string Export(UNet model, DdpmConfig config, string dir) =>
        OnnxExport.Write(model, config, Path.Combine(dir, "model.onnx"), "test").Path;

    /// <summary>max |a − b| / max |b|: the error relative to the reference output's scale (elementwise ratios blow up
    /// near 0).</summary>
    public static double RelativeError(ReadOnlySpan<float> actual, ReadOnlySpan<float> expected)
    {
        if (actual.Length != expected.Length) throw new ArgumentException($"{actual.Length} values vs {expected.Length}");
        double maxDiff = 0, maxRef = 0;
        for (int i = 0; i < actual.Length; i++)
        {
            maxDiff = Math.Max(maxDiff, Math.Abs((double)actual[i] - expected[i]));
            maxRef = Math.Max(maxRef, Math.Abs((double)expected[i]));
        }
        return maxDiff / maxRef;
    }
}
