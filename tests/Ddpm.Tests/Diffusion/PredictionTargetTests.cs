using Ddpm.Configuration;
using Ddpm.Diffusion;
using static TorchSharp.torch;

namespace Ddpm.Tests.Diffusion;

public class PredictionTargetTests
{
    [Fact]
    public void Eps_x0_and_v_conversions_are_mutual_inverses()
    {
        using var scope = NewDisposeScope();
        var d = new GaussianDiffusion(NoiseSchedule.Cosine(1000));
        var x0 = randn(4, 1, 3, 3, generator: new Generator(1)).clamp(-1, 1);
        var eps = randn(4, 1, 3, 3, generator: new Generator(2));
        var t = tensor(new long[] { 0, 10, 500, 990 });
        var xt = d.QSample(x0, t, eps);
        var v = d.VFromEpsX0(x0, t, eps);
        Assert.True((d.EpsFromV(xt, t, v) - eps).abs().max().item<float>() < 1e-4f);
        Assert.True((d.X0FromV(xt, t, v) - x0).abs().max().item<float>() < 1e-4f);
        Assert.True((d.PredictEpsFromX0(xt, t, x0) - eps).abs().max().item<float>() < 2e-3f);
        Assert.True((d.PredictX0FromEps(xt, t, eps) - x0).abs().max().item<float>() < 2e-3f);
    }

    [Theory]
    [InlineData(PredictionTarget.Epsilon)]
    [InlineData(PredictionTarget.X0)]
    [InlineData(PredictionTarget.V)]
    public void A_network_that_outputs_the_true_target_gives_the_true_noise(PredictionTarget target)
    {
        using var scope = NewDisposeScope();
        var d = new GaussianDiffusion(NoiseSchedule.Linear(1000), target);
        var x0 = rand(2, 1, 4, 4, generator: new Generator(3)) * 2 - 1;
        var eps = randn(2, 1, 4, 4, generator: new Generator(4));
        var t = tensor(new long[] { 100, 700 });
        var xt = d.QSample(x0, t, eps);
        var output = d.TargetFor(x0, t, eps);
        var recovered = d.AsEpsPredictor((_, _) => output)(xt, t);
        Assert.True((recovered - eps).abs().max().item<float>() < 1e-3f, $"{target}: {(recovered - eps).abs().max().item<float>()}");
    }

    [Fact]
    public void The_prediction_key_parses_and_round_trips()
    {
        var c = DdpmConfig.Parse("diffusion_params:\n  prediction: v\n  schedule: cosine\n");
        Assert.Equal(PredictionTarget.V, c.Diffusion.Prediction);
        Assert.Equal(PredictionTarget.V, DdpmConfig.Parse(c.ToYaml()).Diffusion.Prediction);
        var e = Assert.Throws<ConfigException>(() => DdpmConfig.Parse("diffusion_params:\n  prediction: score\n"));
        Assert.Equal("diffusion_params.prediction", e.Key);
        var s = Assert.Throws<ConfigException>(() => DdpmConfig.Parse("diffusion_params:\n  schedule: sigmoid\n"));
        Assert.Equal("diffusion_params.schedule", s.Key);
    }
}
