using System.CommandLine;
using Ddpm.Configuration;
using Ddpm.IO;
using Ddpm.Interop;

namespace Ddpm.Cli.Commands;

/// <summary><c>ddpm import</c>: a PyTorch state_dict (.pth or .safetensors) plus a config → a ddpm checkpoint.</summary>
internal static class ImportCommand
{
    public static Command Create()
    {
        var weights = new Option<string>("--weights")
        {
            Description = "torch.save(model.state_dict()) file (.pth, zip format) or .safetensors from the PyTorch reference",
            Required = true,
        };
        var config = WeightOptions.ConfigOption("YAML config the weights were trained with (its model_params give the architecture)");
        config.Required = true;
        var output = new Option<string>("--out") { Description = "checkpoint to write", Required = true };
        var strict = WeightOptions.StrictOption();
        var allowNonFinite = WeightOptions.AllowNonFiniteOption();
        var cmd = new Command("import", "Convert PyTorch reference weights into a ddpm checkpoint") { weights, config, output, strict, allowNonFinite };
        cmd.SetAction(p => Run(p.GetValue(weights)!, p.GetValue(config)!, p.GetValue(output)!, p.GetValue(strict), p.GetValue(allowNonFinite)));
        return cmd;
    }

    private static int Run(string weightsPath, string configPath, string outPath, bool strict, bool allowNonFinite)
    {
        // The output must never replace the input: not by the same path, a symbolic link or a hard link to it.
        if (FileIdentity.SameFile(weightsPath, outPath) || FileIdentity.SameFile(configPath, outPath))
            throw new UsageException($"--out '{outPath}' is the same file as the {(FileIdentity.SameFile(weightsPath, outPath) ? "--weights" : "--config")} " +
                "input; give a new checkpoint path");
        PathCheck.EnsureWritableFile(outPath, "--out");
        if (StateDictIo.Detect(weightsPath) == WeightFormat.Checkpoint)
            throw new UsageException($"'{weightsPath}' is already a ddpm checkpoint; nothing to import");
        var (missing, nonFinite) = ModelFile.Import(weightsPath, DdpmConfig.Load(configPath), outPath, strict, allowNonFinite);
        WeightOptions.WarnMissing(missing);
        WeightOptions.WarnNonFinite(weightsPath, nonFinite);
        Console.Error.WriteLine($"imported {weightsPath} with the architecture of {configPath}");
        Console.WriteLine(outPath);
        return CliApp.Ok;
    }
}
