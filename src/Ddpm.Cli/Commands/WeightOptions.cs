using System.CommandLine;
using Ddpm.Configuration;
using Ddpm.Interop;

namespace Ddpm.Cli.Commands;

/// <summary>The <c>--config</c>/<c>--strict</c> pair of commands that read raw PyTorch weights, and the loading they imply.</summary>
internal static class WeightOptions
{
    public static Option<string> ConfigOption(string description) => new("--config") { Description = description };

    public static Option<bool> StrictOption() => new("--strict")
    {
        Description = "require every model key in raw weights (false: missing keys keep their initial values, with a warning; " +
            "unexpected or mis-shaped keys are errors either way)",
        DefaultValueFactory = _ => true,
    };

    public static Option<bool> AllowNonFiniteOption() => new("--allow-nonfinite")
    {
        Description = "load weights holding NaN or infinite values (with a warning) instead of refusing them",
    };

    /// <summary>
    /// Loads any weight file (a checkpoint's EMA weights when <paramref name="useEma"/> and it has them); raw weights
    /// need <paramref name="configPath"/> (a usage error otherwise). NaN or infinite weights are refused unless
    /// <paramref name="allowNonFinite"/> (then warned about).
    /// </summary>
    public static LoadedModel Load(string path, string? configPath, bool strict, bool allowNonFinite = false, bool useEma = false)
    {
        var loaded = ModelFile.Load(path, ConfigFor(path, configPath), strict, allowNonFinite, useEma);
        WarnMissing(loaded.MissingKeys);
        WarnNonFinite(path, loaded.NonFiniteTensors);
        return loaded;
    }

    /// <summary>The loud warning for weights loaded with --allow-nonfinite that hold NaN or ±∞.</summary>
    public static void WarnNonFinite(string path, IReadOnlyList<string> tensors)
    {
        if (tensors.Count > 0)
            Console.Error.WriteLine($"WARNING: --allow-nonfinite: '{path}' has {tensors.Count} tensor(s) holding NaN or infinite values " +
                $"({string.Join(", ", tensors.Take(5))}{(tensors.Count > 5 ? ", …" : "")}); what it produces is not meaningful");
    }

    /// <summary>
    /// The config raw weights at <paramref name="path"/> need (a usage error without <paramref name="configPath"/>), or
    /// null for a ddpm checkpoint, which carries its own (a given <c>--config</c> is then ignored, with a warning).
    /// </summary>
    public static DdpmConfig? ConfigFor(string path, string? configPath)
    {
        var format = StateDictIo.Detect(path);
        if (format == WeightFormat.Checkpoint)
        {
            if (configPath is not null)
                Console.Error.WriteLine($"warning: --config ignored: '{path}' is a ddpm checkpoint and carries its own config");
            return null;
        }
        if (configPath is null)
            throw new UsageException($"'{path}' holds raw {format} weights with no architecture: pass --config CONFIG.yaml " +
                "(the model_params they were trained with)");
        return DdpmConfig.Load(configPath);
    }

    public static void WarnMissing(IReadOnlyList<string> missing)
    {
        if (missing.Count > 0)
            Console.Error.WriteLine($"warning: --strict false: {missing.Count} key(s) missing from the weights keep their " +
                $"initial values: {string.Join(", ", missing)}");
    }
}
