using Ddpm.Configuration;
using Ddpm.Diffusion;

namespace Ddpm.Tests.Diffusion;

public class NoiseScheduleTests
{
    private static readonly NoiseSchedule Linear = NoiseSchedule.Linear(1000, 1e-4, 0.02);

    [Fact]
    public void Linear_schedule_starts_at_beta_start_and_ends_at_beta_end()
    {
        Assert.Equal(1000, Linear.T);
        Assert.Equal(1e-4, Linear.Betas[0], 15);
        Assert.Equal(0.02, Linear.Betas[999], 15);
        // torch.linspace: equal steps of (0.02 − 1e-4)/999.
        Assert.Equal(1e-4 + 487 * (0.02 - 1e-4) / 999, Linear.Betas[487], 15);
    }

    [Fact]
    public void Linear_alpha_bar_is_strictly_decreasing_and_is_the_running_product_of_alphas()
    {
        double prod = 1;
        for (int t = 0; t < Linear.T; t++)
        {
            prod *= 1 - Linear.Betas[t];
            Assert.Equal(prod, Linear.AlphasCumprod[t], 14);
            if (t > 0) Assert.True(Linear.AlphasCumprod[t] < Linear.AlphasCumprod[t - 1], $"ᾱ not decreasing at t={t}");
        }
        Assert.InRange(Linear.AlphasCumprod[999], 0, 1e-4); // ≈ 4.0e-5: x_T is almost pure noise
    }

    [Fact]
    public void Posterior_variance_is_zero_at_t0()
    {
        Assert.Equal(0.0, Linear.PosteriorVariance[0]);
    }

    [Fact]
    public void Posterior_variance_at_t487_matches_the_golden_value()
    {
        Assert.InRange(Linear.PosteriorVariance[487], 0.0097916 - 1e-7, 0.0097916 + 1e-7);
    }

    [Fact]
    public void Posterior_variance_at_t999_matches_an_independent_computation()
    {
        // ᾱ computed here from scratch: β_t = 1e-4 + t·(0.02 − 1e-4)/999.
        double abar998 = 1, beta999 = 1e-4 + 999 * (0.02 - 1e-4) / 999;
        for (int t = 0; t <= 998; t++) abar998 *= 1 - (1e-4 + t * (0.02 - 1e-4) / 999);
        double abar999 = abar998 * (1 - beta999);
        double expected = beta999 * (1 - abar998) / (1 - abar999);
        Assert.Equal(expected, Linear.PosteriorVariance[999], 12);
        Assert.InRange(Linear.PosteriorVariance[999], 0.02 * (1 - 1e-4), 0.02); // ≈ β_999 as ᾱ_999 → 0
    }

    [Fact]
    public void Cosine_schedule_matches_its_golden_values()
    {
        var cos = NoiseSchedule.Cosine(1000);
        Assert.InRange(cos.Betas[0], 4.1284e-05 - 1e-9, 4.1284e-05 + 1e-9);
        Assert.InRange(cos.AlphasCumprod[500], 0.49229 - 1e-5, 0.49229 + 1e-5);
        Assert.All(cos.Betas, b => Assert.InRange(b, 0.0, 0.999));
        Assert.Equal(0.999, cos.Betas[999]); // the last β is clipped
    }

    [Fact]
    public void FromOptions_builds_the_schedule_the_config_names()
    {
        var lin = NoiseSchedule.FromOptions(new DiffusionOptions { NumTimesteps = 10, BetaStart = 0.001, BetaEnd = 0.01 });
        Assert.Equal(10, lin.T);
        Assert.Equal(0.001, lin.Betas[0], 15);
        Assert.Equal(0.01, lin.Betas[9], 15);
        var cos = NoiseSchedule.FromOptions(new DiffusionOptions { NumTimesteps = 1000, Schedule = ScheduleKind.Cosine });
        Assert.Equal(NoiseSchedule.Cosine(1000).Betas, cos.Betas);
    }

    [Fact]
    public void A_beta_outside_zero_one_is_rejected()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => new NoiseSchedule([0.1, 1.0]));
        Assert.Throws<ArgumentOutOfRangeException>(() => new NoiseSchedule([0.0, 0.1]));
    }
}
