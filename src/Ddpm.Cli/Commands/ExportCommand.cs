using System.CommandLine;
using Ddpm.IO;
using Ddpm.Interop;
using Ddpm.Training;

namespace Ddpm.Cli.Commands;

/// <summary><c>ddpm export</c>: a checkpoint's weights as a PyTorch state_dict (.pth) or safetensors file.</summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint written by 'ddpm train' or 'ddpm import' (or raw weights with --config)", Required = true };
        var to = new Option<string>("--to")
        {
            Description = "output file: .pth (loads with Unet(config).load_state_dict(torch.load(path))), .safetensors, or .ckpt (a ddpm checkpoint of the weights and config, no training state)",
            Required = true,
        };
        var config = WeightOptions.ConfigOption("YAML config, only when --checkpoint is raw weights (to convert .safetensors ↔ .pth)");
        var ema = new Option<bool>("--ema") { Description = "export the checkpoint's EMA weights instead of the raw ones" };
        var allowNonFinite = WeightOptions.AllowNonFiniteOption();
        var cmd = new Command("export", "Write a checkpoint's weights for the PyTorch reference (.pth or .safetensors) or as a weights-only checkpoint (.ckpt)") { checkpoint, to, config, ema, allowNonFinite };
        cmd.SetAction(p => Run(p.GetValue(checkpoint)!, p.GetValue(to)!, p.GetValue(config), p.GetValue(ema), p.GetValue(allowNonFinite)));
        return cmd;
    }

    private static int Run(string checkpointPath, string to, string? configPath, bool ema, bool allowNonFinite)
    {
        var ext = Path.GetExtension(to).ToLowerInvariant();
        if (ext is not (".pth" or ".pt" or ".bin" or ".safetensors" or ".ckpt"))
            throw new UsageException($"--to: '{to}' must end in .pth, .pt, .bin (PyTorch), .safetensors or .ckpt (weights only)");
        if (FileIdentity.SameFile(checkpointPath, to))
            throw new UsageException($"--to '{to}' is the same file as --checkpoint; give a new file name");
        PathCheck.EnsureWritableFile(to, "--to");
        using var loaded = WeightOptions.Load(checkpointPath, configPath, strict: true, allowNonFinite, checkFinite: !ema);
        if (ema)
        {
            if (loaded.Manifest is null || !Checkpoint.HasEma(checkpointPath))
                throw new UsageException($"--ema: '{checkpointPath}' holds no EMA weights (train with train_params.ema_decay > 0)");
            Checkpoint.LoadEmaInto(checkpointPath, loaded.Model);
            WeightOptions.WarnNonFinite(checkpointPath, ModelFile.CheckFinite(loaded.Model, checkpointPath, allowNonFinite));
        }
        // Interrupted (Ctrl+C, SIGTERM), the export leaves no temporary beside --to; one killed outright is cleaned by the next write.
        using (AtomicFile.RemoveTemporaryOnSignal(to))
        {
            // .ckpt: a ddpm checkpoint of these weights and the config, without training state (a model to ship).
            if (ext == ".ckpt") Checkpoint.Save(to, loaded.Model, loaded.Config, loaded.Manifest?.Epoch ?? 0, loaded.Manifest?.Step ?? 0);
            else ModelFile.Export(loaded.Model, to);
        }
        Console.Error.WriteLine($"exported {loaded.Model.state_dict().Count} float32 tensors ({loaded.Model.ParameterCount():N0} parameters) " +
            $"from {checkpointPath}{(ema ? " (EMA)" : "")}");
        Console.WriteLine(to);
        return CliApp.Ok;
    }
}
