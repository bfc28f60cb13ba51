using Ddpm.Configuration;
using Ddpm.Models;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Reliability;

/// <summary>Checkpoints of the tiny U-Net (8×8, T = 20) written without training, for tests of the readers.</summary>
internal static class TinyCheckpoint
{
    public static string Yaml { get; } = TinyCli.Yaml(imSize: 8, numEpochs: 1, taskName: "tiny-checkpoint");

    /// <summary>
    /// Writes a checkpoint at <paramref name="path"/>: at step <paramref name="step"/>, every weight equal to
    /// <paramref name="fill"/> (initial weights when null), and an EMA of every weight <paramref name="emaFill"/> when
    /// given; a schedule of <paramref name="timesteps"/> steps.
    /// </summary>
    public static string Write(string path, long step = 0, float? fill = null, float? emaFill = null, int timesteps = 20)
    {
        var config = DdpmConfig.Parse(TinyCli.Yaml(imSize: 8, numEpochs: 1, taskName: "tiny-checkpoint", timesteps: timesteps));
        using var model = Filled(config, fill);
        using var ema = emaFill is { } e ? Filled(config, e) : null;
        Checkpoint.Save(path, model, config, epoch: 0, step: step, ema: ema);
        return path;
    }

    private static UNet Filled(DdpmConfig config, float? value)
    {
        var model = new UNet(config.Model);
        if (value is { } v)
            using (no_grad())
                foreach (var p in model.parameters()) p.fill_(v);
        return model;
    }
}
