using Ddpm.Diffusion;
using Ddpm.Models;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>Classifier-free guidance (Ho &amp; Salimans 2022, eq. 6).</summary>
public static class ClassifierFreeGuidance
{
    /// <summary>
    /// ε̃ = (1 + w)·ε_θ(x, t, y) − w·ε_θ(x, t, ∅), both halves in one batched forward pass. With w = 0 this is the
    /// conditional model. <paramref name="labels"/>: int64 [B]. <paramref name="toEps"/> converts the network's output
    /// (x_0 or v prediction) to ε.
    /// </summary>
    public static NoisePredictor Guided(UNet model, Tensor labels, double w, Func<Tensor, Tensor, Tensor, Tensor>? toEps = null)
    {
        if (!model.IsConditional) throw new ArgumentException("guidance needs a class-conditional model (num_classes > 0)");
        return Guided((x, t, y) => model.forward(x, t, y), model.NullLabel, labels, w, toEps);
    }

    /// <summary>
    /// The same for any conditional forward f(x, t, y) (e.g. <see cref="GraphedForward.Forward"/>) whose null label
    /// ∅ is <paramref name="nullLabel"/>.
    /// </summary>
    public static NoisePredictor Guided(Func<Tensor, Tensor, Tensor, Tensor> forward, long nullLabel, Tensor labels, double w,
        Func<Tensor, Tensor, Tensor, Tensor>? toEps = null)
    {
        toEps ??= (_, _, output) => output;
        if (w == 0) return (x, t) => toEps(x, t, forward(x, t, labels));
        return (x, t) =>
        {
            using var scope = NewDisposeScope();
            long b = x.shape[0];
            var nullLabels = full(b, nullLabel, dtype: int64, device: x.device);
            var tt = t.shape[0] == b ? t : t.expand(b);
            var xx = cat([x, x], 0);
            var t2 = cat([tt, tt], 0);
            var both = toEps(xx, t2, forward(xx, t2, cat([labels, nullLabels], 0)));
            var cond = both.narrow(0, 0, b);
            var uncond = both.narrow(0, b, b);
            return ((1 + w) * cond - w * uncond).MoveToOuterDisposeScope();
        };
    }
}
