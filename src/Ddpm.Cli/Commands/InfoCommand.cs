using System.CommandLine;
using Ddpm.Configuration;
using Ddpm.Models;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm info</c>: parameter counts per block and a summary of the schedule (<see cref="ModelSummary"/>); with
/// <c>--keys</c>, every config key with its type, default and meaning (<see cref="ConfigSchema.Describe"/>, docs/config.md).
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
            var path = p.GetValue(config) ?? throw new UsageException("give --config FILE (or --keys for the list of config keys)");
            foreach (var line in ModelSummary.Lines(DdpmConfig.Load(path))) Console.WriteLine(line);
            return CliApp.Ok;
        });
        return cmd;
    }
}
