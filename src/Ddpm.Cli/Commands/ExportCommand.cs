using System.CommandLine;
using Ddpm.Interop;
using Ddpm.Interop.Onnx;
using Ddpm.IO;

namespace Ddpm.Cli.Commands;

/// <summary>
/// <c>ddpm export</c>: checks the output paths, runs <see cref="ModelExport.Write"/> (PyTorch weights, a weights-only
/// checkpoint, ONNX, a web page that generates in the browser) and says what it wrote.
/// </summary>
internal static class ExportCommand
{
    public static Command Create()
    {
        var checkpoint = new Option<string>("--checkpoint") { Description = "checkpoint written by 'ddpm train' or 'ddpm import' (or raw weights with --config)", Required = true };
        var to = new Option<string?>("--to") { Description = "output file: .pth (loads with Unet(config).load_state_dict(torch.load(path))), .safetensors, .ckpt (a ddpm checkpoint of the weights and config, no training state) or .onnx (ONNX Runtime without libtorch; EMA weights when present)" };
        var web = new Option<string?>("--web") { Description = "also (or instead) write a static web page into this folder that generates images in the browser with onnxruntime-web (the model as .onnx, EMA weights when present); serve it with any static file server" };
        var config = WeightOptions.ConfigOption("YAML config, only when --checkpoint is raw weights (to convert .safetensors ↔ .pth)");
        var ema = new Option<bool>("--ema") { Description = "export the checkpoint's EMA weights instead of the raw ones" };
        var allowNonFinite = WeightOptions.AllowNonFiniteOption();
        var cmd = new Command("export", "Write a checkpoint's weights for PyTorch (.pth, .safetensors), as a weights-only checkpoint (.ckpt), as ONNX, or as a web page") { checkpoint, to, web, config, ema, allowNonFinite };
        cmd.SetAction(p =>
        {
            string path = p.GetValue(checkpoint)!;
            string? file = p.GetValue(to), folder = p.GetValue(web);
            if (file is null && folder is null) throw new UsageException("give --to FILE (.pth, .pt, .bin, .safetensors, .ckpt or .onnx) or --web FOLDER");
            if (file is not null && !ModelExport.Extensions.Contains(Path.GetExtension(file).ToLowerInvariant()))
                throw new UsageException($"--to: '{file}' must end in .pth, .pt, .bin (PyTorch), .safetensors, .ckpt (weights only) or .onnx (ONNX)");
            if (file is not null && FileIdentity.SameFile(path, file)) throw new UsageException($"--to '{file}' is the same file as --checkpoint; give a new file name");
            if (file is not null) PathCheck.EnsureWritableFile(file, "--to");
            if (p.GetValue(ema) && !(StateDictIo.Detect(path) == WeightFormat.Checkpoint && Training.Checkpoint.HasEma(path)))
                throw new UsageException($"--ema: '{path}' holds no EMA weights (train with train_params.ema_decay > 0)");
            var r = ModelExport.Write(path, file, folder, WeightOptions.ConfigFor(path, p.GetValue(config)), p.GetValue(ema), p.GetValue(allowNonFinite));
            WeightOptions.WarnMissing(r.MissingKeys);
            WeightOptions.WarnNonFinite(path, r.NonFiniteTensors);
            var from = $"from {path}{(r.UsedEma ? " (EMA)" : "")}";
            if (file is not null)
            {
                bool onnx = file.EndsWith(".onnx", StringComparison.OrdinalIgnoreCase);
                Console.Error.WriteLine($"exported {r.Tensors} float32 tensors ({r.Parameters:N0} parameters) {from}{(onnx ? $" as ONNX (opset {OnnxExport.Opset})" : "")}");
                Console.WriteLine(file);
            }
            if (r.Web is { } page)
            {
                Console.Error.WriteLine($"wrote a web page ({page.Bytes / 1e6:F1} MB with onnxruntime-web) {from}: serve the folder with any static file server, e.g. python3 -m http.server -d {folder}");
                Console.WriteLine(page.Folder);
            }
            return CliApp.Ok;
        });
        return cmd;
    }
}
