using System.CommandLine;
using Ddpm.IO;
using Ddpm.Interop;
using Ddpm.Interop.Onnx;
using Ddpm.Training;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm export</c>: a checkpoint's weights as a PyTorch state_dict (.pth) or safetensors file, an ONNX model
/// (.onnx), or a static web page that generates in the browser (--web).
/// </summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint written by 'ddpm train' or 'ddpm import' (or raw weights with --config)", Required = true };
        var to = new Option<string>("--to")
        {
            Description = "output file: .pth (loads with Unet(config).load_state_dict(torch.load(path))), .safetensors, .ckpt (a ddpm " +
                "checkpoint of the weights and config, no training state) or .onnx (ONNX Runtime without libtorch; EMA weights when present)",
        };
        var web = new Option<string?>("--web")
        {
            Description = "also (or instead) write a static web page into this folder that generates images in the browser " +
                "with onnxruntime-web (the model as .onnx, EMA weights when present); serve it with any static file server",
        };
        var config = WeightOptions.ConfigOption("YAML config, only when --checkpoint is raw weights (to convert .safetensors ↔ .pth)");
        var ema = new Option<bool>("--ema") { Description = "export the checkpoint's EMA weights instead of the raw ones" };
        var allowNonFinite = WeightOptions.AllowNonFiniteOption();
        var cmd = new Command("export", "Write a checkpoint's weights for PyTorch (.pth, .safetensors), as a weights-only checkpoint (.ckpt), as ONNX, or as a web page") { checkpoint, to, web, config, ema, allowNonFinite };
        cmd.SetAction(p => Run(p.GetValue(checkpoint)!, p.GetValue(to), p.GetValue(web), p.GetValue(config), p.GetValue(ema), p.GetValue(allowNonFinite)));
        return cmd;
    }

    private static int Run(string checkpointPath, string? to, string? web, string? configPath, bool ema, bool allowNonFinite)
    {
        if (to is null && web is null) throw new UsageException("give --to FILE (.pth, .pt, .bin, .safetensors, .ckpt or .onnx) or --web FOLDER");
        var ext = to is null ? null : Path.GetExtension(to).ToLowerInvariant();
        if (to is not null)
        {
            if (ext is not (".pth" or ".pt" or ".bin" or ".safetensors" or ".ckpt" or ".onnx"))
                throw new UsageException($"--to: '{to}' must end in .pth, .pt, .bin (PyTorch), .safetensors, .ckpt (weights only) or .onnx (ONNX)");
            if (FileIdentity.SameFile(checkpointPath, to))
                throw new UsageException($"--to '{to}' is the same file as --checkpoint; give a new file name");
            PathCheck.EnsureWritableFile(to, "--to");
        }
        // An ONNX model is for generation: it carries the EMA weights when there are some, as sampling uses them.
        using var loaded = WeightOptions.Load(checkpointPath, configPath, strict: true, allowNonFinite, useEma: ema || ext == ".onnx" || web is not null);
        if (ema && !loaded.UsesEma) throw new UsageException($"--ema: '{checkpointPath}' holds no EMA weights (train with train_params.ema_decay > 0)");
        ema = loaded.UsesEma;
        var source = $"{Path.GetFileName(checkpointPath)}{(ema ? " (EMA)" : "")}";
        if (to is not null)
        {
            // Interrupted (Ctrl+C, SIGTERM), the export leaves no temporary beside --to; one killed outright is cleaned
            // by the next write.
            using (AtomicFile.RemoveTemporaryOnSignal(to))
            {
                if (ext == ".onnx") OnnxExport.Write(loaded.Model, loaded.Config, to, source);
                // .ckpt: a ddpm checkpoint of these weights and the config, without training state (a model to ship).
                else if (ext == ".ckpt") Checkpoint.Save(to, loaded.Model, loaded.Config, loaded.Manifest?.Epoch ?? 0, loaded.Manifest?.Step ?? 0);
                else ModelFile.Export(loaded.Model, to);
            }
            Console.Error.WriteLine($"exported {loaded.Model.state_dict().Count} float32 tensors ({loaded.Model.ParameterCount():N0} parameters) " +
                $"from {checkpointPath}{(ema ? " (EMA)" : "")}{(ext == ".onnx" ? $" as ONNX (opset {OnnxExport.Opset})" : "")}");
            Console.WriteLine(to);
        }
        if (web is not null)
        {
            var result = OnnxWebExport.Write(loaded.Model, loaded.Config, web, source: source);
            Console.Error.WriteLine($"wrote a web page ({result.Bytes / 1e6:F1} MB with onnxruntime-web) from {checkpointPath}" +
                $"{(ema ? " (EMA)" : "")}: serve the folder with any static file server, e.g. python3 -m http.server -d {web}");
            Console.WriteLine(result.Folder);
        }
        return CliApp.Ok;
    }
}
