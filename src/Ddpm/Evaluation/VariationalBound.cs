using Ddpm.Diffusion;
using Ddpm.Runtime;
using static TorchSharp.torch;

namespace Ddpm.Evaluation;

/// <summary>
/// −log p_θ(x_0) in bits/dim through the variational bound (Ho et al. 2020, eq. 5; improved-diffusion's calc_bpd_loop),
/// with 0-based timesteps t ∈ {0..T−1}: L_T = KL(q(x_T | x_0) ‖ N(0, I)) (prior, no model); for t ≥ 1, L_t' =
/// KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) with x_t ~ q(x_t | x_0) (one draw each); L_0 = −log p_θ(x_0 | x_1)
/// under the <see cref="DiscretizedGaussian"/> decoder with mean μ_θ(x_1, 0) and log σ = ½ ln σ²_0 (β̃ clipped to β̃_1
/// at t = 0, as improved-diffusion). p_θ's variance σ_t² is the sampler's (<see cref="VarianceKind"/>, β̃_t by
/// default). Every term is computed in float64 from float32 model outputs. Noise for image i (counted across batches)
/// at timestep t is drawn from a generator seeded by (seed, i, t), so the exact sum and the estimate see the same x_t:
/// their difference is then the timestep subsampling alone.
/// </summary>
public sealed class VariationalBound(GaussianDiffusion diffusion, VarianceKind variance = VarianceKind.BetaTilde, bool clipX0 = false)
{
    public GaussianDiffusion Diffusion => diffusion;
    public VarianceKind Variance => variance;
    public bool ClipX0 => clipX0;
    private int T => diffusion.T;

    /// <summary>
    /// L_T = KL(N(√ᾱ_{T−1} x_0, (1 − ᾱ_{T−1}) I) ‖ N(0, I)) per image in nats: x_0 [B, ...] → [B]. Model-free, so taken
    /// straight from the float64 schedule.
    /// </summary>
    public Tensor PriorNats(Tensor x0)
    {
        using var scope = NewDisposeScope();
        var x = x0.to(float64);
        double a = diffusion.Schedule.AlphasCumprod[T - 1];
        var mean = x * Math.Sqrt(a);
        var kl = GaussianMath.NormalKl(mean, full_like(mean, Math.Log(1 - a)), zeros_like(mean), zeros_like(mean));
        return SumPerImage(kl).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// L_{t−1} = KL(q(x_{t−1} | x_t, x_0) ‖ p_θ(x_{t−1} | x_t)) per image in nats, for 0-based t ≥ 1 (per image:
    /// <paramref name="t"/> int64 [B]), x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) <paramref name="noise"/>. Never negative.
    /// </summary>
    public Tensor KlNats(NoisePredictor model, Tensor x0, Tensor t, Tensor noise)
    {
        using var scope = NewDisposeScope();
        if (t.lt(1).any().item<bool>()) throw new ArgumentOutOfRangeException(nameof(t), "KL terms exist for t ≥ 1; t = 0 is the decoder");
        var x = x0.to(float64);
        var xt = diffusion.QSample(x, t, noise.to(float64));
        var posterior = diffusion.QPosteriorMeanVariance(x, xt, t);
        var p = Reverse(model, xt, t);
        var kl = GaussianMath.NormalKl(posterior.Mean, posterior.LogVariance.to(float64).expand_as(x), p.Mean, p.LogVariance.to(float64).expand_as(x));
        return SumPerImage(kl).MoveToOuterDisposeScope();
    }

    /// <summary>L_0 = −ln p_θ(x_0 | x_1) per image in nats, x_1 = √ᾱ_0 x_0 + √(1 − ᾱ_0)
    /// <paramref name="noise"/>.</summary>
    public Tensor DecoderNats(NoisePredictor model, Tensor x0, Tensor noise)
    {
        using var scope = NewDisposeScope();
        var x = x0.to(float64);
        var t = zeros(x.shape[0], dtype: int64, device: x.device);
        var x1 = diffusion.QSample(x, t, noise.to(float64));
        var p = Reverse(model, x1, t);
        var logp = DiscretizedGaussian.LogLikelihood(x, p.Mean, (0.5 * p.LogVariance.to(float64)).expand_as(x));
        return SumPerImage(-logp).MoveToOuterDisposeScope();
    }

    private ReverseStats Reverse(NoisePredictor model, Tensor xt, Tensor t)
    {
        var eps = model(xt.to(float32), t).to(float64);
        return diffusion.PMeanVarianceFromEps(xt, t, eps, variance, clipX0);
    }

    private static Tensor SumPerImage(Tensor perElement) => perElement.flatten(1).sum(1);

    /// <summary>
    /// The exact bound: all T terms (T model evaluations per image) for every batch of <paramref name="batches"/>
    /// (x_0 [B, C, H, W] in [−1, 1] on the model's device, 256-level pixels). <paramref name="progress"/> sees the
    /// number of image-terms evaluated so far.
    /// </summary>
    public BitsPerDim Exact(NoisePredictor model, IEnumerable<Tensor> batches, long seed = 0, Action<long>? progress = null)
    {
        TorchSharpPatch.EnsureApplied();
        using var noGrad = no_grad();
        var acc = new Accumulator(T);
        long evals = 0, first = 0;
        foreach (var x0 in batches)
        {
            using var scope = NewDisposeScope();
            long n = x0.shape[0];
            var ids = Enumerable.Range(0, (int)n).Select(i => first + i).ToArray();
            var prior = PriorNats(x0);
            var decoder = DecoderNats(model, x0, Noise(x0, seed, ids, new int[n]));
            progress?.Invoke(evals += n);
            var klSum = zeros(n, dtype: float64, device: x0.device);
            var termSums = new double[T];
            termSums[0] = decoder.sum().item<double>();
            for (int t = 1; t < T; t++)
            {
                using var inner = NewDisposeScope();
                var ts = Enumerable.Repeat(t, (int)n).ToArray();
                var kl = KlNats(model, x0, full(n, (long)t, dtype: int64, device: x0.device), Noise(x0, seed, ids, ts));
                klSum.add_(kl);
                termSums[t] = kl.sum().item<double>();
                progress?.Invoke(evals += n);
                NativeGarbage.CollectIfDue();
            }
            acc.Add(x0, prior, klSum, decoder, termSums, new double[n]);
            first += n;
        }
        return acc.Result(NllMethod.Exact, T, T - 1, seed);
    }

    /// <summary>
    /// The unbiased estimate: for each image its own K of the T − 1 KL terms (0-based t ∈ {1..T−1}), drawn uniformly
    /// without replacement, their sum scaled by (T − 1)/K; prior and decoder exactly. Per image, the K drawn values are
    /// a sample from a finite population of M = T − 1, so the subsampling variance of its estimate is M² (1 − K/M)
    /// s_i²/K (s_i² their sample variance); the mean over N images has variance Σ_i of those / N². Independent subsets
    /// per image make the estimate's error average out over images, and the variance is estimated from N·K values. When
    /// a few terms dominate the sum (small t with a linear schedule starting at tiny β) and N·K is small, this standard
    /// error can still understate the true one: raise K, or use the exact sum.
    /// </summary>
    public BitsPerDim Estimate(NoisePredictor model, IEnumerable<Tensor> batches, int k, long seed = 0, Action<long>? progress = null)
    {
        TorchSharpPatch.EnsureApplied();
        int m = T - 1;
        if (m < 2) throw new ArgumentOutOfRangeException(nameof(k), $"a subset estimate needs T ≥ 3 (T = {T}); use the exact sum");
        if (k < 2 || k > m) throw new ArgumentOutOfRangeException(nameof(k), k, $"K must lie in 2..T−1 = 2..{m} (2 or more so its error can be estimated)");
        using var noGrad = no_grad();
        var acc = new Accumulator(T);
        long evals = 0, first = 0;
        foreach (var x0 in batches)
        {
            using var scope = NewDisposeScope();
            int n = (int)x0.shape[0];
            var ids = Enumerable.Range(0, n).Select(i => first + i).ToArray();
            var prior = PriorNats(x0);
            var decoder = DecoderNats(model, x0, Noise(x0, seed, ids, new int[n]));
            progress?.Invoke(evals += n);
            var subsets = ids.Select(id => Subset(seed, id, m, k)).ToArray();
            var values = new double[n, k];
            var klSum = zeros(n, dtype: float64, device: x0.device);
            for (int j = 0; j < k; j++)
            {
                using var inner = NewDisposeScope();
                var ts = subsets.Select(sub => sub[j]).ToArray();
                var kl = KlNats(model, x0, tensor(ts.Select(t => (long)t).ToArray(), dtype: int64, device: x0.device), Noise(x0, seed, ids, ts));
                klSum.add_(kl);
                var v = kl.cpu().data<double>().ToArray();
                for (int i = 0; i < n; i++) values[i, j] = v[i];
                progress?.Invoke(evals += n);
                NativeGarbage.CollectIfDue();
            }
            klSum.mul_((double)m / k);
            var variances = new double[n];
            for (int i = 0; i < n; i++)
            {
                double mean = 0, s2 = 0;
                for (int j = 0; j < k; j++) mean += values[i, j] / k;
                for (int j = 0; j < k; j++) s2 += (values[i, j] - mean) * (values[i, j] - mean) / (k - 1);
                variances[i] = (double)m * m * (1 - (double)k / m) * s2 / k;
            }
            acc.Add(x0, prior, klSum, decoder, null, variances);
            first += n;
        }
        return acc.Result(NllMethod.Estimate, T, k, seed);
    }

    /// <summary>K distinct timesteps of {1..M} for image <paramref name="image"/>, from a generator seeded by (seed,
    /// image).</summary>
    private static int[] Subset(long seed, long image, int m, int k)
    {
        using var g = new Generator(Mix(seed, image, -1), new Device("cpu"));
        using var perm = randperm(m, dtype: int64, generator: g);
        return perm.data<long>().Take(k).Select(i => (int)i + 1).ToArray();
    }

    /// <summary>
    /// ε for image <paramref name="images"/>[i] at timestep <paramref name="ts"/>[i]: float64, each drawn on the CPU
    /// from a generator seeded by (seed, image, t), so every evaluation order sees the same noise.
    /// </summary>
    private static Tensor Noise(Tensor like, long seed, long[] images, int[] ts)
    {
        using var scope = NewDisposeScope();
        var shape = like.shape.ToArray();
        shape[0] = 1;
        var parts = new Tensor[images.Length];
        for (int i = 0; i < images.Length; i++)
        {
            using var g = new Generator(Mix(seed, images[i], ts[i]), new Device("cpu"));
            parts[i] = randn(shape, dtype: float64, generator: g);
        }
        return cat(parts, 0).to(like.device).MoveToOuterDisposeScope();
    }

    private static ulong Mix(long seed, long image, int t)
    {
        // SplitMix64 finaliser over (seed, image, t): distinct, well-spread generator seeds.
        ulong z = unchecked((ulong)seed * 0x9E3779B97F4A7C15UL + (ulong)image * 0xBF58476D1CE4E5B9UL + (ulong)(uint)(t + 1) * 0x94D049BB133111EBUL);
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Running sums over batches, in nats per image, turned into bits/dim at the end.</summary>
    private sealed class Accumulator(int timesteps)
    {
        private readonly List<double> _totals = new();
        private double _prior, _kl, _decoder, _timestepVarianceSum;
        private readonly double[] _terms = new double[timesteps];
        private bool _hasTerms = true;
        private long _dims;

        public void Add(Tensor x0, Tensor prior, Tensor kl, Tensor decoder, double[]? termSums, double[] timestepVariances)
        {
            _dims = x0[0].numel();
            _prior += prior.sum().item<double>();
            _kl += kl.sum().item<double>();
            _decoder += decoder.sum().item<double>();
            _totals.AddRange((prior + kl + decoder).cpu().data<double>().ToArray());
            // Σ_i Var(Ŝ_i): divided by N² it is the variance of the mean over images (independent subsets).
            _timestepVarianceSum += timestepVariances.Sum();
            if (termSums is null) _hasTerms = false;
            else for (int t = 0; t < termSums.Length; t++) _terms[t] += termSums[t];
        }

        public BitsPerDim Result(NllMethod method, int t, int klTerms, long seed)
        {
            int n = _totals.Count;
            if (n == 0) throw new ArgumentException("no images to evaluate");
            double scale = 1.0 / (_dims * Math.Log(2));
            double mean = _totals.Average();
            double sd = n > 1 ? Math.Sqrt(_totals.Sum(v => (v - mean) * (v - mean)) / (n - 1)) : double.NaN;
            return new BitsPerDim
            {
                Method = method,
                Images = n,
                Timesteps = t,
                KlTermsEvaluated = klTerms,
                Total = mean * scale,
                Prior = _prior / n * scale,
                Kl = _kl / n * scale,
                Decoder = _decoder / n * scale,
                ImageStdErr = sd / Math.Sqrt(n) * scale,
                TimestepStdErr = Math.Sqrt(_timestepVarianceSum) / n * scale,
                TermsByTimestep = _hasTerms ? _terms.Select(v => v / n * scale).ToArray() : null,
                Seed = seed,
            };
        }
    }
}
