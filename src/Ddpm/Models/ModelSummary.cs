using System.Globalization;
using Ddpm.Configuration;
using Ddpm.Diffusion;

namespace Ddpm.Models;

/// <summary>What <c>ddpm info</c> shows of a config: the U-Net's parameters per block and a few rows of the noise
/// schedule.</summary>
public static class ModelSummary
{
    public static IEnumerable<string> Lines(DdpmConfig cfg)
    {
        var inv = CultureInfo.InvariantCulture;
        using var model = new UNet(cfg.Model);
        yield return "U-Net parameters by block:";
        foreach (var g in model.named_parameters().GroupBy(p => BlockOf(p.name)))
            yield return string.Format(inv, "  {0,-10} {1,12:N0}", g.Key, g.Sum(p => p.parameter.numel()));
        yield return string.Format(inv, "  {0,-10} {1,12:N0}", "total", model.ParameterCount());
        yield return string.Format(inv, "total parameters: {0}", model.ParameterCount());
        var s = NoiseSchedule.FromOptions(cfg.Diffusion);
        var d = cfg.Diffusion;
        yield return $"schedule: {EnumNames.Name(d.Schedule)}, T = {s.T}" +
            (d.Schedule == ScheduleKind.Linear ? string.Format(inv, ", β from {0} to {1}", d.BetaStart, d.BetaEnd) : "");
        yield return "       t          β_t          ᾱ_t         β̃_t   √(1−ᾱ_t)";
        foreach (var t in new[] { 0, 1, s.T / 4, s.T / 2, 3 * s.T / 4, s.T - 1 }.Where(t => t < s.T).Distinct())
            yield return string.Format(inv, "  {0,6} {1,12:G5} {2,12:G5} {3,12:G5} {4,10:F5}", t, s.Betas[t], s.AlphasCumprod[t],
                s.PosteriorVariance[t], Math.Sqrt(1 - s.AlphasCumprod[t]));
    }

    /// <summary>The block a parameter belongs to: <c>downs.0</c>, <c>mids.1</c>, <c>ups.2</c>, or its top-level
    /// module.</summary>
    private static string BlockOf(string name)
    {
        var parts = name.Split('.');
        return parts[0] is "downs" or "mids" or "ups" ? $"{parts[0]}.{parts[1]}" : parts[0];
    }
}
