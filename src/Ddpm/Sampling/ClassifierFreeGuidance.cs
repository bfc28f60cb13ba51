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

    /// <summary>
    /// Two classes mixed per image (Liu et al. 2022, "Composable Diffusion", the conjunction with weights
    /// (1 + w)(1 − f) and (1 + w)f): ε̃ = (1 + w)·[(1 − f)·ε(x, t, a) + f·ε(x, t, b)] − w·ε(x, t, ∅), in one batched
    /// forward pass.
    /// f = 0 is guidance (Ho &amp; Salimans 2022, eq. 6) towards a, f = 1 towards b. <paramref name="from"/>,
    /// <paramref name="to"/>: int64 [B]; <paramref name="fractions"/>: f per image.
    /// </summary>
    public static NoisePredictor Mixed(Func<Tensor, Tensor, Tensor, Tensor> forward, long nullLabel, Tensor from,
        Tensor to, IReadOnlyList<double> fractions, double w, Func<Tensor, Tensor, Tensor, Tensor>? toEps = null)
    {
        toEps ??= (_, _, output) => output;
        var f = fractions.Select(v => (float)v).ToArray();
        var g = fractions.Select(v => (float)(1 - v)).ToArray();
        return (x, t) =>
        {
            using var scope = NewDisposeScope();
            long b = x.shape[0];
            var shape = new long[x.dim()];
            Array.Fill(shape, 1L);
            shape[0] = b;
            var wTo = tensor(f, dtype: x.dtype).to(x.device).reshape(shape);
            var wFrom = tensor(g, dtype: x.dtype).to(x.device).reshape(shape);
            var tt = t.shape[0] == b ? t : t.expand(b);
            int parts = w == 0 ? 2 : 3;
            var xx = cat(Enumerable.Repeat(x, parts).ToArray(), 0);
            var t3 = cat(Enumerable.Repeat(tt, parts).ToArray(), 0);
            var labels = w == 0 ? cat([from, to], 0)
                : cat([from, to, full(b, nullLabel, dtype: int64, device: x.device)], 0);
            var all = toEps(xx, t3, forward(xx, t3, labels));
            var mixed = wFrom * all.narrow(0, 0, b) + wTo * all.narrow(0, b, b);
            return (w == 0 ? mixed : (1 + w) * mixed - w * all.narrow(0, 2 * b, b)).MoveToOuterDisposeScope();
        };
    }
}
