using Ddpm.Configuration;
using Ddpm.Interop.Onnx;
using Ddpm.IO;
using Ddpm.Training;

namespace Ddpm.Interop;

/// <summary>What <see cref="ModelExport.Write"/> wrote: the file and web page, and what went into them.</summary>
public sealed record ExportResult(int Tensors, long Parameters, bool UsedEma, IReadOnlyList<string> MissingKeys, IReadOnlyList<string> NonFiniteTensors,
    OnnxWebExportResult? Web);

/// <summary>
/// <c>ddpm export</c>: a weight file's model as PyTorch weights (<c>.pth</c>, <c>.pt</c>, <c>.bin</c>,
/// <c>.safetensors</c>), as a weights-only ddpm checkpoint (<c>.ckpt</c>, a model to ship), as ONNX (<c>.onnx</c>),
/// and/or as a static web page. ONNX and the page are for generation, so they carry a checkpoint's EMA weights when it
/// has them, as sampling does.
/// </summary>
public static class ModelExport
{
    public static readonly IReadOnlyList<string> Extensions = [".pth", ".pt", ".bin", ".safetensors", ".ckpt", ".onnx"];

    /// <summary>
    /// Checks an export before any work (<see cref="Write"/> assumes it): something to write, a known extension, an
    /// output that is not the input, a writable file, and EMA weights where they are asked for.
    /// </summary>
    /// <exception cref="RequestException">The first problem, naming the option (<c>--to</c>, <c>--ema</c>).</exception>
    public static void Check(string source, string? to, string? webFolder, bool ema)
    {
        if (to is null && webFolder is null) throw new RequestException("give --to FILE (.pth, .pt, .bin, .safetensors, .ckpt or .onnx) or --web FOLDER");
        if (to is not null && !Extensions.Contains(Path.GetExtension(to).ToLowerInvariant()))
            throw new RequestException($"--to: '{to}' must end in .pth, .pt, .bin (PyTorch), .safetensors, .ckpt (weights only) or .onnx (ONNX)");
        if (to is not null && FileIdentity.SameFile(source, to)) throw new RequestException($"--to '{to}' is the same file as --checkpoint; give a new file name");
        if (to is not null) PathCheck.EnsureWritableFile(to, "--to");
        if (ema && !(StateDictIo.Detect(source) == WeightFormat.Checkpoint && Checkpoint.HasEma(source)))
            throw new RequestException($"--ema: '{source}' holds no EMA weights (train with train_params.ema_decay > 0)");
    }

    /// <param name="source">The weights (a checkpoint, or raw weights with <paramref name="config"/>).</param>
    /// <param name="to">The file to write, its format by extension (one of <see cref="Extensions"/>), or null.</param>
    /// <param name="webFolder">A folder for the web page, or null.</param>
    /// <param name="ema">Export the checkpoint's EMA weights (always for ONNX and the page when it has them).</param>
    /// <exception cref="WeightsException">EMA weights asked of a file without them.</exception>
    public static ExportResult Write(string source, string? to, string? webFolder, DdpmConfig? config = null, bool ema = false,
        bool allowNonFinite = false)
    {
        var ext = to is null ? null : Path.GetExtension(to).ToLowerInvariant();
        if (ext is not null && !Extensions.Contains(ext)) throw new ArgumentException($"'{to}' must end in {string.Join(", ", Extensions)}", nameof(to));
        // One open of the file; a checkpoint's EMA weights when asked, and for ONNX and the page when it has them.
        using var loaded = ModelFile.Load(source, config, strict: true, allowNonFinite, useEma: ema || ext == ".onnx" || webFolder is not null);
        if (ema && !loaded.UsesEma) throw new WeightsException(source, "holds no EMA weights (train with train_params.ema_decay > 0)");
        var label = $"{Path.GetFileName(source)}{(loaded.UsesEma ? " (EMA)" : "")}";
        if (to is not null)
        {
            // Interrupted (Ctrl+C, SIGTERM), no temporary stays beside the file; one killed outright is cleaned by the
            // next write.
            using (AtomicFile.RemoveTemporaryOnSignal(to))
            {
                if (ext == ".onnx") OnnxExport.Write(loaded.Model, loaded.Config, to, label);
                else if (ext == ".ckpt") Checkpoint.Save(to, loaded.Model, loaded.Config, loaded.Manifest?.Epoch ?? 0, loaded.Manifest?.Step ?? 0);
                else ModelFile.Export(loaded.Model, to);
            }
        }
        var web = webFolder is null ? null : OnnxWebExport.Write(loaded.Model, loaded.Config, webFolder, source: label);
        return new ExportResult(loaded.Model.state_dict().Count, loaded.Model.ParameterCount(), loaded.UsesEma, loaded.MissingKeys,
            loaded.NonFiniteTensors, web);
    }
}
