using Ddpm.Interop;
using Ddpm.Interop.Onnx;
using Ddpm.Models;

namespace Ddpm.Cli.Commands;

/// <summary>The commands about one model: what it holds, and its weights to and from other formats.</summary>
internal static class ModelCommands
{
    /// <summary>
    /// <c>ddpm info</c>: parameter counts per block and a summary of the schedule (<see cref="ModelSummary"/>); with
    /// <c>--keys</c>, every config key with its type, default and meaning (<see cref="ConfigSchema.Describe"/>).
    /// </summary>
    public static Command Info()
    {
        var config = Opt<string?>("--config", "YAML config (required unless --keys)");
        var keys = Opt<bool>("--keys", "print every config key (type, default, meaning) as Markdown instead");
        return Cmd("info", "Show the model's parameter counts and the noise schedule, or the config keys", [config, keys], p =>
        {
            if (p.GetValue(keys)) Console.Write(ConfigSchema.Describe());
            else
                foreach (var line in ModelSummary.Lines(DdpmConfig.Load(p.GetValue(config) ?? throw new UsageException("give --config FILE (or --keys for the list of config keys)"))))
                    Console.WriteLine(line);
            return CliApp.Ok;
        });
    }

    /// <summary><c>ddpm import</c>: a PyTorch state_dict (.pth, .safetensors) and a config → a checkpoint.</summary>
    public static Command Import()
    {
        var weights = Opt<string>("--weights", "torch.save(model.state_dict()) file (.pth, zip format) or .safetensors from the PyTorch reference", required: true);
        var config = Opt<string>("--config", "YAML config the weights were trained with (its model_params give the architecture)", required: true);
        var output = Opt<string>("--out", "checkpoint to write", required: true);
        var strict = StrictOption();
        var allowNonFinite = AllowNonFiniteOption();
        return Cmd("import", "Convert PyTorch reference weights into a ddpm checkpoint", [weights, config, output, strict, allowNonFinite], p =>
        {
            string weightsPath = p.GetValue(weights)!, configPath = p.GetValue(config)!, outPath = p.GetValue(output)!;
            var (missing, nonFinite) = ModelFile.Import(weightsPath, DdpmConfig.Load(configPath), outPath, p.GetValue(strict),
                p.GetValue(allowNonFinite), configPath);
            WarnAboutWeights(weightsPath, missing, nonFinite);
            Console.Error.WriteLine($"imported {weightsPath} with the architecture of {configPath}");
            Console.WriteLine(outPath);
            return CliApp.Ok;
        });
    }

    /// <summary>
    /// <c>ddpm export</c>: runs <see cref="ModelExport.Write"/> (PyTorch weights, a weights-only checkpoint, ONNX, a
    /// web page that generates in the browser) and says what it wrote.
    /// </summary>
    public static Command Export()
    {
        var checkpoint = Opt<string>("--checkpoint", "checkpoint written by 'ddpm train' or 'ddpm import' (or raw weights with --config)", required: true);
        var to = Opt<string?>("--to", "output file: .pth (loads with Unet(config).load_state_dict(torch.load(path))), .safetensors, .ckpt (a ddpm checkpoint of the weights and config, no training state) or .onnx (ONNX Runtime without libtorch; EMA weights when present)");
        var web = Opt<string?>("--web", "also (or instead) write a static web page into this folder that generates images in the browser with onnxruntime-web (the model as .onnx, EMA weights when present); serve it with any static file server");
        var config = Opt<string>("--config", "YAML config, only when --checkpoint is raw weights (to convert .safetensors ↔ .pth)");
        var ema = Opt<bool>("--ema", "export the checkpoint's EMA weights instead of the raw ones");
        var allowNonFinite = AllowNonFiniteOption();
        return Cmd("export", "Write a checkpoint's weights for PyTorch (.pth, .safetensors), as a weights-only checkpoint (.ckpt), as ONNX, or as a web page",
            [checkpoint, to, web, config, ema, allowNonFinite], p =>
        {
            string path = p.GetValue(checkpoint)!;
            string? file = p.GetValue(to), folder = p.GetValue(web);
            ModelExport.Check(path, file, folder, p.GetValue(ema));
            var r = ModelExport.Write(path, file, folder, ConfigFor(path, p.GetValue(config)), p.GetValue(ema), p.GetValue(allowNonFinite));
            WarnAboutWeights(path, r.MissingKeys, r.NonFiniteTensors);
            var from = $"from {path}{(r.UsedEma ? " (EMA)" : "")}";
            if (file is not null)
            {
                var onnx = file.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase) ? $" as ONNX (opset {OnnxExport.Opset})" : "";
                Console.Error.WriteLine($"exported {r.Tensors} float32 tensors ({r.Parameters:N0} parameters) {from}{onnx}");
                Console.WriteLine(file);
            }
            if (r.Web is { } page)
            {
                Console.Error.WriteLine($"wrote a web page ({page.Bytes / 1e6:F1} MB with onnxruntime-web) {from}: serve the folder with any " +
                    $"static file server, e.g. python3 -m http.server -d {folder}");
                Console.WriteLine(page.Folder);
            }
            return CliApp.Ok;
        });
    }
}
