using Ddpm.Interop;
using Ddpm.Sampling;
using Ddpm.Tests.Data;
using static TorchSharp.torch;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// A checkpoint read while training replaces it (issue 25): the weights, the EMA and the manifest loaded must all come
/// from one file. Two checkpoints whose every weight encodes their step are renamed over one path, back and forth,
/// while it is loaded again and again.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Slow)]
public sealed class CheckpointSwapTests : IDisposable
{
    private const int Loads = 40;
    private readonly TempFolder _tmp = new();

    public void Dispose() => _tmp.Dispose();

    [Fact]
    public void Loads_while_the_path_is_replaced_read_weights_ema_and_step_of_one_file()
    {
        var path = _tmp.File("checkpoint.ckpt");
        // Step s: weights all s, EMA all 10·s.
        var versions = new[] { 1, 2 }.Select(s => File.ReadAllBytes(TinyCheckpoint.Write(_tmp.File($"v{s}.ckpt"), step: s, fill: s, emaFill: 10 * s))).ToArray();
        File.WriteAllBytes(path, versions[0]);
        using var stop = new CancellationTokenSource();
        var swapper = new Thread(() =>
        {
            // As CheckpointFolder publishes: a complete file renamed over the path.
            for (long i = 0; !stop.IsCancellationRequested; i++)
            {
                var next = _tmp.File($"next-{i % 2}");
                File.WriteAllBytes(next, versions[i % 2]);
                File.Move(next, path, overwrite: true);
            }
        });
        swapper.Start();
        var mismatches = new List<string>();
        try
        {
            for (int i = 0; i < Loads; i++)
            {
                bool ema = i % 2 == 0;
                using var generator = ImageGenerator.Load(path, CPU, useEma: ema);
                long step = generator.Source!.Manifest!.Step;
                Assert.Equal(ema, generator.UsesEma);
                float expected = ema ? 10 * step : step;
                var values = generator.Model.parameters().Select(p => p.flatten()[0].item<float>()).Distinct().ToList();
                if (values.Count != 1 || values[0] != expected)
                    mismatches.Add($"load {i} (EMA {ema}): step {step}, weights {string.Join(", ", values)}");
                using var loaded = ModelFile.Load(path);
                float raw = loaded.Model.parameters().First().flatten()[0].item<float>();
                if (raw != loaded.Manifest!.Step) mismatches.Add($"ModelFile.Load {i}: step {loaded.Manifest.Step}, weights {raw}");
            }
        }
        finally
        {
            stop.Cancel();
            swapper.Join();
        }
        Assert.True(mismatches.Count == 0, string.Join("\n", mismatches));
    }
}
