using Ddpm.Configuration;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Diffusion;

/// <summary>
/// A noise predictor ε_θ(x_t, t): x_t [B, C, H, W], t int64 [B] → ε [B, C, H, W], whatever the network itself predicts
/// (<see cref="GaussianDiffusion.AsEpsPredictor"/> makes one from a <see cref="DenoisingNetwork"/>). Samplers and the
/// bound take this.
/// </summary>
public delegate Tensor NoisePredictor(Tensor xt, Tensor t);

/// <summary>
/// The network as trained: x_t [B, C, H, W], t int64 [B] → its raw output, ε, x_0 or v as
/// <see cref="GaussianDiffusion.Prediction"/> says. Not ε in general: convert it with
/// <see cref="GaussianDiffusion.AsEpsPredictor"/> before sampling.
/// </summary>
public delegate Tensor DenoisingNetwork(Tensor xt, Tensor t);

/// <summary>q(x_{t−1} | x_t, x_0) = N(mean, variance·I).</summary>
public sealed record PosteriorStats(Tensor Mean, Tensor Variance, Tensor LogVariance);

/// <summary>p_θ(x_{t−1} | x_t) = N(mean, variance·I), and the x_0 it implies.</summary>
public sealed record ReverseStats(Tensor Mean, Tensor Variance, Tensor LogVariance, Tensor PredX0);

/// <summary>
/// The DDPM forward and reverse processes on tensors (Ho et al. 2020; the seed's derivation). Owns the schedule's
/// coefficients as float32 tensors, cached per device; every method takes the model (or its output) as an argument,
/// the U-Net only sees (x, t). Timesteps are 0-based: t ∈ {0..T−1}, t = 0 being the last reverse step.
/// </summary>
public sealed class GaussianDiffusion
{
    private readonly Dictionary<string, Coefficients> _cache = new();
    private readonly Dictionary<(string Device, double Gamma), Tensor> _minSnrCache = new();

    public NoiseSchedule Schedule { get; }
    public int T => Schedule.T;
    /// <summary>What the network outputs; <see cref="EpsFromOutput"/> turns it into ε for the samplers and the
    /// bound.</summary>
    public PredictionTarget Prediction { get; }

    public GaussianDiffusion(NoiseSchedule schedule, PredictionTarget prediction = PredictionTarget.Epsilon)
    {
        Schedule = schedule;
        Prediction = prediction;
    }

    /// <summary>The process a <c>diffusion_params</c> section describes.</summary>
    public static GaussianDiffusion FromOptions(DiffusionOptions options) =>
        new(NoiseSchedule.FromOptions(options), options.Prediction);

    private sealed class Coefficients(NoiseSchedule s, Device device)
    {
        private static Tensor T1(double[] v, Device d)
        {
            var t = tensor(v.Select(x => (float)x).ToArray(), dtype: float32, device: d);
            t.DetachFromDisposeScope();
            return t;
        }

        public readonly Tensor Betas = T1(s.Betas, device);
        public readonly Tensor SqrtAlphasCumprod = T1(s.AlphasCumprod.Select(Math.Sqrt).ToArray(), device);
        public readonly Tensor SqrtOneMinusAlphasCumprod = T1(s.AlphasCumprod.Select(a => Math.Sqrt(1 - a)).ToArray(), device);
        public readonly Tensor SqrtRecipAlphas = T1(s.Alphas.Select(a => 1 / Math.Sqrt(a)).ToArray(), device);
        public readonly Tensor SqrtRecipAlphasCumprod = T1(s.AlphasCumprod.Select(a => 1 / Math.Sqrt(a)).ToArray(), device);
        public readonly Tensor SqrtRecipM1AlphasCumprod = T1(s.AlphasCumprod.Select(a => Math.Sqrt(1 / a - 1)).ToArray(), device);
        public readonly Tensor EpsCoef = T1(s.Betas.Select((b, i) => b / Math.Sqrt(1 - s.AlphasCumprod[i])).ToArray(), device);
        public readonly Tensor PosteriorVariance = T1(s.PosteriorVariance, device);
        public readonly Tensor PosteriorLogVarianceClipped = T1(s.PosteriorLogVarianceClipped, device);
        public readonly Tensor PosteriorMeanCoef1 = T1(s.PosteriorMeanCoef1, device);
        public readonly Tensor PosteriorMeanCoef2 = T1(s.PosteriorMeanCoef2, device);
        public readonly Tensor LogBetasForVariance = T1(s.Betas.Select((b, i) => Math.Log(i == 0 && s.T > 1 ? s.PosteriorVariance[1] : b)).ToArray(), device);
        public readonly Tensor BetasForVariance = T1(s.Betas.Select((b, i) => i == 0 && s.T > 1 ? s.PosteriorVariance[1] : b).ToArray(), device);
    }

    private Coefficients For(Device device)
    {
        var key = device.ToString();
        lock (_cache)
        {
            if (!_cache.TryGetValue(key, out var c)) _cache[key] = c = new Coefficients(Schedule, device);
            return c;
        }
    }

    /// <summary>coeffs[t] reshaped to [B, 1, 1, 1] (as many singleton dims as <paramref name="like"/> has after
    /// B).</summary>
    private static Tensor Extract(Tensor coeffs, Tensor t, Tensor like)
    {
        var shape = new long[like.dim()];
        shape[0] = t.shape[0];
        for (int i = 1; i < shape.Length; i++) shape[i] = 1;
        return coeffs.index_select(0, t).reshape(shape);
    }

    private void CheckT(Tensor t)
    {
        if (t.dim() != 1) throw new ArgumentException($"t must be a 1-D int64 tensor [B], got shape [{string.Join(", ", t.shape)}]");
    }

    /// <summary>
    /// Forward process in closed form, q(x_t | x_0) = N(√ᾱ_t x_0, (1 − ᾱ_t) I):
    /// x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε (seed: "前向过程"; DDPM eq. 4).
    /// </summary>
    public Tensor QSample(Tensor x0, Tensor t, Tensor noise)
    {
        CheckT(t);
        var c = For(x0.device);
        return Extract(c.SqrtAlphasCumprod, t, x0) * x0 + Extract(c.SqrtOneMinusAlphasCumprod, t, x0) * noise;
    }

    /// <summary>Mean and variance of q(x_t | x_0): (√ᾱ_t x_0, 1 − ᾱ_t).</summary>
    public (Tensor Mean, Tensor Variance) QMeanVariance(Tensor x0, Tensor t)
    {
        CheckT(t);
        var c = For(x0.device);
        var sq = Extract(c.SqrtOneMinusAlphasCumprod, t, x0);
        return (Extract(c.SqrtAlphasCumprod, t, x0) * x0, sq * sq);
    }

    /// <summary>
    /// Posterior q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I), μ̃_t = √ᾱ_{t−1} β_t/(1 − ᾱ_t) x_0 + √α_t (1 − ᾱ_{t−1})/(1 −
    /// ᾱ_t) x_t, β̃_t = (1 − ᾱ_{t−1})/(1 − ᾱ_t) β_t (seed: "后验分布"; DDPM eq. 6–7).
    /// </summary>
    public PosteriorStats QPosteriorMeanVariance(Tensor x0, Tensor xt, Tensor t)
    {
        CheckT(t);
        var c = For(xt.device);
        var mean = Extract(c.PosteriorMeanCoef1, t, xt) * x0 + Extract(c.PosteriorMeanCoef2, t, xt) * xt;
        return new PosteriorStats(mean, Extract(c.PosteriorVariance, t, xt), Extract(c.PosteriorLogVarianceClipped, t, xt));
    }

    /// <summary>x_0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t, the forward process solved for x_0.</summary>
    public Tensor PredictX0FromEps(Tensor xt, Tensor t, Tensor eps)
    {
        CheckT(t);
        var c = For(xt.device);
        return Extract(c.SqrtRecipAlphasCumprod, t, xt) * xt - Extract(c.SqrtRecipM1AlphasCumprod, t, xt) * eps;
    }

    /// <summary>ε = (x_t − √ᾱ_t x_0)/√(1 − ᾱ_t), the inverse of <see cref="PredictX0FromEps"/>.</summary>
    public Tensor PredictEpsFromX0(Tensor xt, Tensor t, Tensor x0)
    {
        CheckT(t);
        var c = For(xt.device);
        return (Extract(c.SqrtRecipAlphasCumprod, t, xt) * xt - x0) / Extract(c.SqrtRecipM1AlphasCumprod, t, xt);
    }

    /// <summary>v = √ᾱ_t ε − √(1 − ᾱ_t) x_0 (Salimans &amp; Ho 2022, §4).</summary>
    public Tensor VFromEpsX0(Tensor x0, Tensor t, Tensor eps)
    {
        CheckT(t);
        var c = For(x0.device);
        return Extract(c.SqrtAlphasCumprod, t, x0) * eps - Extract(c.SqrtOneMinusAlphasCumprod, t, x0) * x0;
    }

    /// <summary>ε = √(1 − ᾱ_t) x_t + √ᾱ_t v, from x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε and the definition of v.</summary>
    public Tensor EpsFromV(Tensor xt, Tensor t, Tensor v)
    {
        CheckT(t);
        var c = For(xt.device);
        return Extract(c.SqrtOneMinusAlphasCumprod, t, xt) * xt + Extract(c.SqrtAlphasCumprod, t, xt) * v;
    }

    /// <summary>x_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v.</summary>
    public Tensor X0FromV(Tensor xt, Tensor t, Tensor v)
    {
        CheckT(t);
        var c = For(xt.device);
        return Extract(c.SqrtAlphasCumprod, t, xt) * xt - Extract(c.SqrtOneMinusAlphasCumprod, t, xt) * v;
    }

    /// <summary>The network's raw output (ε, x_0 or v per <see cref="Prediction"/>) as ε.</summary>
    public Tensor EpsFromOutput(Tensor xt, Tensor t, Tensor output) => Prediction switch
    {
        PredictionTarget.Epsilon => output,
        PredictionTarget.X0 => PredictEpsFromX0(xt, t, output),
        PredictionTarget.V => EpsFromV(xt, t, output),
        _ => throw new InvalidOperationException($"unknown prediction target {Prediction}"),
    };

    /// <summary>The training target for <see cref="Prediction"/> given x_0 and the noise ε that made x_t.</summary>
    public Tensor TargetFor(Tensor x0, Tensor t, Tensor eps) => Prediction switch
    {
        PredictionTarget.Epsilon => eps,
        PredictionTarget.X0 => x0,
        PredictionTarget.V => VFromEpsX0(x0, t, eps),
        _ => throw new InvalidOperationException($"unknown prediction target {Prediction}"),
    };

    /// <summary>Wraps a network that outputs <see cref="Prediction"/> into an ε-predictor, for every sampler and the
    /// bound.</summary>
    public NoisePredictor AsEpsPredictor(DenoisingNetwork network) =>
        Prediction == PredictionTarget.Epsilon ? new NoisePredictor(network) : (xt, t) => EpsFromOutput(xt, t, network(xt, t));

    /// <summary>
    /// The reverse step's Gaussian from a noise prediction. Mean μ_θ = (x_t − β_t/√(1 − ᾱ_t) ε_θ)/√α_t (DDPM eq. 11),
    /// or, with <paramref name="clipX0"/>, the posterior mean μ̃_t(clamp(x̂_0, −1, 1), x_t) as diffusers and
    /// improved-diffusion do. Variance β̃_t or β_t (at t = 0 the β choice uses β̃_1, as improved-diffusion does).
    /// </summary>
    public ReverseStats PMeanVarianceFromEps(Tensor xt, Tensor t, Tensor eps, VarianceKind variance = VarianceKind.BetaTilde, bool clipX0 = false)
    {
        CheckT(t);
        var c = For(xt.device);
        var predX0 = PredictX0FromEps(xt, t, eps);
        Tensor mean;
        if (clipX0)
        {
            predX0 = predX0.clamp(-1.0, 1.0);
            mean = QPosteriorMeanVariance(predX0, xt, t).Mean;
        }
        else
        {
            mean = Extract(c.SqrtRecipAlphas, t, xt) * (xt - Extract(c.EpsCoef, t, xt) * eps);
        }
        var (v, logV) = variance == VarianceKind.BetaTilde
            ? (Extract(c.PosteriorVariance, t, xt), Extract(c.PosteriorLogVarianceClipped, t, xt))
            : (Extract(c.BetasForVariance, t, xt), Extract(c.LogBetasForVariance, t, xt));
        return new ReverseStats(mean, v, logV, predX0);
    }

    /// <summary>p_θ(x_{t−1} | x_t) with ε_θ from <paramref name="model"/>.</summary>
    public ReverseStats PMeanVariance(NoisePredictor model, Tensor xt, Tensor t, VarianceKind variance = VarianceKind.BetaTilde, bool clipX0 = false) =>
        PMeanVarianceFromEps(xt, t, model(xt, t), variance, clipX0);

    /// <summary>
    /// Min-SNR-γ loss weights (Hang et al. 2023): w_t = min(SNR_t, γ) on the x_0 error, SNR_t = ᾱ_t/(1 − ᾱ_t), which is
    /// min(SNR_t, γ)/SNR_t on the ε error and min(SNR_t, γ)/(SNR_t + 1) on the v error (the same loss in each
    /// parametrisation). <paramref name="t"/>: int64 [B]; returns float32 [B] on t's device.
    /// </summary>
    public Tensor MinSnrWeights(Tensor t, double gamma)
    {
        CheckT(t);
        if (!(gamma > 0) || double.IsInfinity(gamma)) throw new ArgumentOutOfRangeException(nameof(gamma), $"must be a positive finite number, got {gamma}");
        Tensor? table;
        lock (_minSnrCache)
        {
            // Cached per device: a fresh host-to-GPU copy every step would make the host wait for the GPU.
            if (!_minSnrCache.TryGetValue((t.device.ToString(), gamma), out table))
            {
                var weights = Schedule.AlphasCumprod.Select(a =>
                {
                    double snr = a / (1 - a), clipped = Math.Min(snr, gamma);
                    return (float)(Prediction switch
                    {
                        PredictionTarget.Epsilon => clipped / snr,
                        PredictionTarget.X0 => clipped,
                        PredictionTarget.V => clipped / (snr + 1),
                        _ => throw new InvalidOperationException($"unknown prediction target {Prediction}"),
                    });
                }).ToArray();
                table = tensor(weights, dtype: float32, device: t.device).DetachFromDisposeScope();
                _minSnrCache[(t.device.ToString(), gamma)] = table;
            }
        }
        return table.index_select(0, t);
    }

    /// <summary>
    /// Algorithm 1 (training): t ~ U{0..T−1}, ε ~ N(0, I), loss = ‖ε − ε_θ(√ᾱ_t x_0 + √(1 − ᾱ_t) ε, t)‖² averaged over
    /// every element (the seed's nn.MSELoss, DDPM eq. 14). For x_0- or v-prediction the target changes accordingly.
    /// With <paramref name="minSnrGamma"/> &gt; 0 each image's mean squared error is weighted by
    /// <see cref="MinSnrWeights"/> before averaging over the batch. t and ε are drawn on the CPU from
    /// <paramref name="generator"/> (reproducible on any device), then moved without waiting: a blocking copy to a GPU
    /// would synchronise the host with it on every step.
    /// </summary>
    public Tensor TrainingLoss(DenoisingNetwork network, Tensor x0, Generator? generator = null, double minSnrGamma = 0)
    {
        var (t, noise) = DrawTrainingNoise(x0.shape[0], x0.shape[1..], x0.dtype, generator);
        return TrainingLoss(network, x0, t.to(x0.device, non_blocking: true), noise.to(x0.device, non_blocking: true), minSnrGamma);
    }

    /// <summary>
    /// Algorithm 1's draws for <paramref name="count"/> images of shape <paramref name="imageShape"/> [C, H, W], in the
    /// order <see cref="TrainingLoss(DenoisingNetwork, Tensor, Generator?, double)"/> makes them: t ~ U{0..T−1}
    /// [count], then ε ~ N(0, I) [count, C, H, W], on the CPU. A data-parallel rank draws them for the whole global
    /// batch and keeps its rows.
    /// </summary>
    public (Tensor T, Tensor Noise) DrawTrainingNoise(long count, long[] imageShape, ScalarType dtype, Generator? generator)
    {
        var t = randint(0, T, [count], dtype: int64, generator: generator);
        var noise = randn([count, .. imageShape], dtype: dtype, generator: generator);
        return (t, noise);
    }

    /// <summary>Algorithm 1's loss (DDPM eq. 14, or the x_0/v target) for given timesteps <paramref name="t"/> [B] and
    /// noise ε (x_0's shape), on x_0's device.</summary>
    public Tensor TrainingLoss(DenoisingNetwork network, Tensor x0, Tensor t, Tensor noise, double minSnrGamma = 0)
    {
        var xt = QSample(x0, t, noise);
        return Loss(network(xt, t), TargetFor(x0, t, noise), t, minSnrGamma);
    }

    /// <summary>
    /// The training objective on a batch's network output and target (<see cref="TargetFor"/>): the mean squared error
    /// over every element (DDPM eq. 14), or with <paramref name="minSnrGamma"/> &gt; 0 each image's mean squared error
    /// weighted by <see cref="MinSnrWeights"/> of its <paramref name="t"/> (Hang et al. 2023, eq. 9), then averaged.
    /// </summary>
    public Tensor Loss(Tensor output, Tensor target, Tensor t, double minSnrGamma = 0)
    {
        if (minSnrGamma == 0) return nn.functional.mse_loss(output, target);
        var perImage = (output - target).square().flatten(1).mean([1]);
        return (MinSnrWeights(t, minSnrGamma) * perImage).mean();
    }
}
