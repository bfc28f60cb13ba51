using System.CommandLine;
using System.Globalization;
using Ddpm.Configuration;
using Ddpm.Diffusion;
using Ddpm.Models;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm info</c>: parameter counts per block and a summary of the schedule; with <c>--keys</c>, every config key with its
/// type, default and meaning (<see cref="ConfigSchema.Describe"/>, the text of docs/config.md).
/// </summary>
internal static class InfoCommand
{
    public static Command Create()
    {
        var config = new Option<string?>("--config") { Description = "YAML config (required unless --keys)" };
        var keys = new Option<bool>("--keys") { Description = "print every config key (type, default, meaning) as Markdown instead" };
        var cmd = new Command("info", "Show the model's parameter counts and the noise schedule, or the config keys") { config, keys };
        cmd.SetAction(p =>
        {
            if (p.GetValue(keys))
            {
                Console.Write(ConfigSchema.Describe());
                return CliApp.Ok;
            }
            return Run(DdpmConfig.Load(p.GetValue(config) ?? throw new UsageException("give --config FILE (or --keys for the list of config keys)")));
        });
        return cmd;
    }

    private static int Run(DdpmConfig cfg)
    {
        var inv = CultureInfo.InvariantCulture;
        using var model = new UNet(cfg.Model);
        Console.WriteLine("U-Net parameters by block:");
        var byBlock = model.named_parameters()
            .GroupBy(p => BlockOf(p.name))
            .Select(g => (Block: g.Key, Count: g.Sum(p => p.parameter.numel())));
        foreach (var (block, count) in byBlock) Console.WriteLine(string.Format(inv, "  {0,-10} {1,12:N0}", block, count));
        Console.WriteLine(string.Format(inv, "  {0,-10} {1,12:N0}", "total", model.ParameterCount()));
        Console.WriteLine(string.Format(inv, "total parameters: {0}", model.ParameterCount()));

        var s = NoiseSchedule.FromOptions(cfg.Diffusion);
        Console.WriteLine($"schedule: {EnumNames.Name(cfg.Diffusion.Schedule)}, T = {s.T}" +
            (cfg.Diffusion.Schedule == ScheduleKind.Linear ? string.Format(inv, ", β from {0} to {1}", cfg.Diffusion.BetaStart, cfg.Diffusion.BetaEnd) : ""));
        Console.WriteLine("       t          β_t          ᾱ_t         β̃_t   √(1−ᾱ_t)");
        foreach (var t in new[] { 0, 1, s.T / 4, s.T / 2, 3 * s.T / 4, s.T - 1 }.Where(t => t < s.T).Distinct())
            Console.WriteLine(string.Format(inv, "  {0,6} {1,12:G5} {2,12:G5} {3,12:G5} {4,10:F5}", t, s.Betas[t], s.AlphasCumprod[t],
                s.PosteriorVariance[t], Math.Sqrt(1 - s.AlphasCumprod[t])));
        return CliApp.Ok;
    }

    private static string BlockOf(string name)
    {
        var parts = name.Split('.');
        return parts[0] is "downs" or "mids" or "ups" ? $"{parts[0]}.{parts[1]}" : parts[0];
    }
}
