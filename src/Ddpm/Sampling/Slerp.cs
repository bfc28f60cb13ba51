using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>Spherical linear interpolation of Gaussian noises, image by image.</summary>
public static class Slerp
{
    /// <summary>
    /// slerp(a, b; f) = sin((1 − f)θ)/sin θ · a + sin(fθ)/sin θ · b with cos θ = ⟨a, b⟩/(|a| |b|) (Shoemake 1985), per
    /// image: <paramref name="a"/>, <paramref name="b"/> [B, …] (or [1, …], broadcast), <paramref name="fractions"/>
    /// one f per image. The weights are computed in float64; f = 0 gives a and f = 1 gives b exactly. Nearly parallel
    /// noises (sin θ &lt; 1e−6) are interpolated linearly.
    /// </summary>
    public static Tensor Interpolate(Tensor a, Tensor b, IReadOnlyList<double> fractions)
    {
        using var scope = NewDisposeScope();
        int n = fractions.Count;
        var fa = a.reshape(a.shape[0], -1).to(float64);
        var fb = b.reshape(b.shape[0], -1).to(float64);
        var cos = ((fa * fb).sum(1) / (fa.norm(1) * fb.norm(1))).clamp(-1.0, 1.0).cpu();
        var cosines = cos.data<double>().ToArray();
        var wa = new float[n];
        var wb = new float[n];
        for (int i = 0; i < n; i++)
        {
            double f = fractions[i], theta = Math.Acos(cosines[cosines.Length == 1 ? 0 : i]), sin = Math.Sin(theta);
            (wa[i], wb[i]) = f == 0 ? (1f, 0f) : f == 1 ? (0f, 1f)
                : sin < 1e-6 ? ((float)(1 - f), (float)f)
                : ((float)(Math.Sin((1 - f) * theta) / sin), (float)(Math.Sin(f * theta) / sin));
        }
        var shape = new long[a.dim()];
        Array.Fill(shape, 1L);
        shape[0] = n;
        var ta = tensor(wa, dtype: a.dtype).to(a.device).reshape(shape);
        var tb = tensor(wb, dtype: b.dtype).to(b.device).reshape(shape);
        return (ta * a + tb * b).MoveToOuterDisposeScope();
    }
}
