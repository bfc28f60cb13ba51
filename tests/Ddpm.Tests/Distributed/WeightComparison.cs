using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Models;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Distributed;

/// <summary>How the data-parallel tests compare a run over several ranks with one process over the union
/// batch.</summary>
internal static class WeightComparison
{
    private static readonly object Creating = new();

    /// <summary>
    /// Trainer.Create from several threads at once: its seeded model init is locked, but the EMA copy it builds after
    /// draws from the same global generator, so one rank's EMA could take numbers from another's init. Processes never
    /// share it.
    /// </summary>
    public static Trainer Create(DdpmConfig config, TrainerOptions? options = null)
    {
        lock (Creating) return Trainer.Create(config, new Device("cpu"), options);
    }

    /// <summary>All parameters of <paramref name="model"/> in <c>parameters()</c> order, as one float array.</summary>
    public static float[] Flat(UNet model)
    {
        using var flat = cat(model.parameters().Select(p => p.detach().reshape(-1)).ToArray());
        return flat.data<float>().ToArray();
    }

    /// <summary>‖a − b‖ / ‖b‖ over the elements where <paramref name="where"/> is true (all when null).</summary>
    public static double RelativeDifference(float[] a, float[] b, bool[]? where = null)
    {
        double diff = 0, norm = 0;
        for (int i = 0; i < a.Length; i++)
        {
            if (where is not null && !where[i]) continue;
            diff += Math.Pow(a[i] - (double)b[i], 2);
            norm += Math.Pow(b[i], 2);
        }
        return Math.Sqrt(diff / norm);
    }

    /// <summary>
    /// Which elements of the flat weights have a gradient that is not identically zero, from one batch's gradient at
    /// initialisation. Identically zero ones (the attention's key bias, as softmax ignores a constant added to every
    /// logit; a bias followed by a one-channel GroupNorm) show only rounding noise, below 1e-8 of the largest; the next
    /// smallest lies near 1e-7 of it on the tiny model. Cut at 1e-7.
    /// <para>
    /// Why the comparison needs it: there the gradient is rounding noise, which Adam normalises into steps of ±lr, so
    /// two runs that sum the same gradient in different orders move those weights differently (by up to lr per step).
    /// They do not change what the network computes.
    /// </para>
    /// </summary>
    public static bool[] Live(DdpmConfig config, ImageDataset data)
    {
        using var trainer = Create(config);
        using var scope = NewDisposeScope();
        var model = trainer.Model;
        using var g = new Generator(5);
        var loss = trainer.Diffusion.TrainingLoss((xt, t) => model.forward(xt, t), data.Batch(arange(Math.Min(8L, data.Count)), null), g);
        loss.backward();
        var grad = cat(model.parameters().Select(p => p.grad is { } gr ? gr.reshape(-1) : zeros(p.numel())).ToArray()).abs();
        var live = (grad > grad.max() * 1e-7).data<bool>().ToArray();
        Assert.True(live.Count(l => !l) < 300, $"{live.Count(l => !l)} of {live.Length} weights counted as having no gradient");
        return live;
    }
}
