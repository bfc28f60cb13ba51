using Ddpm.Configuration;
using Ddpm.Diffusion;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Tests.Diffusion;

public class MinSnrWeightingTests
{
    private static readonly NoiseSchedule Schedule = NoiseSchedule.Linear(1000);

    // Golden values (float64, computed independently from ᾱ_t = Π(1 − β_s), SNR = ᾱ/(1 − ᾱ), γ = 5):
    // t = 0: SNR 9999; t = 100: 8.53667; t = 200: 1.90991; t = 500: 0.0843595; t = 999: 4.03599e-5.
    [Theory]
    [InlineData(PredictionTarget.Epsilon, new[] { 5.0005e-4, 0.585709, 1.0, 1.0, 1.0 })]
    [InlineData(PredictionTarget.V, new[] { 5.0e-4, 0.524292, 0.656347, 0.0777967, 4.03583e-5 })]
    [InlineData(PredictionTarget.X0, new[] { 5.0, 5.0, 1.90991, 0.0843595, 4.03599e-5 })]
    public void Min_snr_weights_match_golden_values_for_each_prediction_target(PredictionTarget target, double[] expected)
    {
        using var scope = NewDisposeScope();
        var diffusion = new GaussianDiffusion(Schedule, target);
        var w = diffusion.MinSnrWeights(tensor(new long[] { 0, 100, 200, 500, 999 }), 5).data<float>().ToArray();
        for (int i = 0; i < expected.Length; i++)
            Assert.True(Math.Abs(w[i] - expected[i]) <= 1e-5 * expected[i], $"{target} weight {i}: {w[i]} vs {expected[i]}");
    }

    [Fact]
    public void The_weighted_loss_is_the_batch_mean_of_each_images_mse_times_its_weight()
    {
        using var scope = NewDisposeScope();
        var diffusion = new GaussianDiffusion(Schedule);
        var x0 = rand(16, 1, 8, 8) * 2 - 1;
        DenoisingNetwork model = (xt, t) => xt * 0.5f; // any fixed function of x_t
        using var g1 = new Generator(3, new Device("cpu"));
        float weighted = diffusion.TrainingLoss(model, x0, g1, minSnrGamma: 5).item<float>();

        // The same draws of t and ε, by hand.
        using var g2 = new Generator(3, new Device("cpu"));
        var t = randint(0, 1000, [16], dtype: int64, generator: g2);
        var eps = randn(x0.shape, generator: g2);
        var xt = diffusion.QSample(x0, t, eps);
        var perImage = (model(xt, t) - eps).square().mean([1, 2, 3]).data<float>().ToArray();
        var tt = t.data<long>().ToArray();
        double expected = 0;
        for (int i = 0; i < 16; i++)
        {
            double snr = Schedule.AlphasCumprod[tt[i]] / (1 - Schedule.AlphasCumprod[tt[i]]);
            expected += Math.Min(snr, 5) / snr * perImage[i] / 16;
        }
        Assert.True(Math.Abs(weighted - expected) <= 1e-5 * expected, $"weighted loss {weighted} vs {expected}");

        using var g3 = new Generator(3, new Device("cpu"));
        float plain = diffusion.TrainingLoss(model, x0, g3).item<float>();
        Assert.True(Math.Abs(plain - perImage.Average()) <= 1e-5 * plain, "gamma 0 is the plain MSE");
        Assert.True(weighted < plain, "ε weights are at most 1, and below 1 where SNR > γ");
    }

    [Fact]
    public void A_non_positive_gamma_is_refused()
    {
        var diffusion = new GaussianDiffusion(Schedule);
        Assert.Throws<ArgumentOutOfRangeException>(() => diffusion.MinSnrWeights(tensor(new long[] { 1 }), 0));
        Assert.Throws<ArgumentOutOfRangeException>(() => diffusion.MinSnrWeights(tensor(new long[] { 1 }), double.NaN));
    }
}
