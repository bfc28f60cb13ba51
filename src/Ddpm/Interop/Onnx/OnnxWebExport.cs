using Ddpm.Configuration;
using Ddpm.IO;
using Ddpm.Models;

namespace Ddpm.Interop.Onnx;

/// <summary>What <see cref="OnnxWebExport.Write"/> wrote.</summary>
public sealed record OnnxWebExportResult(string Folder, long Bytes, OnnxExportResult Model);

/// <summary>
/// A static folder that generates images in the browser: the page (index.html, ddpm.js, style.css), the model
/// (model.onnx, and its metadata as model.json, which onnxruntime-web cannot read from the file) and onnxruntime-web's
/// wasm backend under ort/. Any static file server serves it; nothing is fetched from elsewhere.
/// </summary>
public static class OnnxWebExport
{
    /// <summary>The files of onnxruntime-web the page loads (from its npm package's dist/, and its package.json for the
    /// licence).</summary>
    public static readonly IReadOnlyList<string> RuntimeFiles = ["ort.wasm.min.mjs", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm", "package.json"];

    private static readonly string[] PageFiles = ["index.html", "ddpm.js", "style.css"];

    /// <summary>Where a build of the CLI keeps onnxruntime-web's files (build/Ddpm.OnnxWeb.targets copies them
    /// there).</summary>
    public static string DefaultRuntimeDirectory => Path.Combine(AppContext.BaseDirectory, "onnxruntime-web");

    /// <summary>
    /// Writes the folder at <paramref name="folder"/>: built beside it, then moved into place, so a failure leaves no
    /// half-written page. An existing folder must be empty or an earlier web export (it is replaced).
    /// </summary>
    /// <exception cref="IOException">The folder holds other files, or onnxruntime-web's files are missing
    /// (named).</exception>
    public static OnnxWebExportResult Write(UNet model, DdpmConfig config, string folder, string? runtimeDirectory = null, string? source = null)
    {
        runtimeDirectory ??= DefaultRuntimeDirectory;
        var missing = RuntimeFiles.Where(f => !File.Exists(Path.Combine(runtimeDirectory, f))).ToList();
        if (missing.Count > 0)
            throw new IOException($"onnxruntime-web's files are missing from '{runtimeDirectory}' ({string.Join(", ", missing)}): " +
                "the build copies them from build/onnxruntime-web after 'npm ci' there; install npm (Node.js) and rebuild");
        var full = Path.GetFullPath(folder.TrimEnd(Path.DirectorySeparatorChar, Path.AltDirectorySeparatorChar));
        if (File.Exists(full)) throw new IOException($"'{folder}' is a file; give a folder for the web page");
        bool replacing = Directory.Exists(full) && Directory.EnumerateFileSystemEntries(full).Any();
        if (replacing && !File.Exists(Path.Combine(full, "model.json")))
            throw new IOException($"'{folder}' is not empty and not an earlier web export; give a new or empty folder");
        var parent = Path.GetDirectoryName(full)!;
        PathCheck.EnsureWritableFolder(parent, $"the folder of '{folder}'");
        var staging = full + AtomicFile.TempMarker + Environment.ProcessId;
        var old = full + ".old-" + Environment.ProcessId;
        if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
        try
        {
            Directory.CreateDirectory(staging);
            var modelResult = OnnxExport.Write(model, config, Path.Combine(staging, "model.onnx"), source);
            File.WriteAllText(Path.Combine(staging, "model.json"), OnnxExport.MetadataJson(config with { Model = model.Options }, source));
            foreach (var name in PageFiles)
            {
                using var resource = typeof(OnnxWebExport).Assembly.GetManifestResourceStream($"Ddpm.Interop.Onnx.Web.{name}")
                    ?? throw new InvalidOperationException($"the page file {name} is not embedded in this build");
                using var file = File.Create(Path.Combine(staging, name));
                resource.CopyTo(file);
            }
            var ort = Directory.CreateDirectory(Path.Combine(staging, "ort")).FullName;
            foreach (var name in RuntimeFiles) File.Copy(Path.Combine(runtimeDirectory, name), Path.Combine(ort, name));
            foreach (var file in Directory.EnumerateFiles(staging, "*", SearchOption.AllDirectories))
                using (var stream = new FileStream(file, FileMode.Open, FileAccess.ReadWrite)) stream.Flush(flushToDisk: true);
            if (Directory.Exists(full)) Directory.Move(full, old);
            Directory.Move(staging, full);
            FileDurability.FsyncDirectory(parent);
            if (Directory.Exists(old)) Directory.Delete(old, recursive: true);
            long bytes = Directory.EnumerateFiles(full, "*", SearchOption.AllDirectories).Sum(f => new FileInfo(f).Length);
            return new OnnxWebExportResult(full, bytes, modelResult with { Path = Path.Combine(full, "model.onnx") });
        }
        catch
        {
            if (Directory.Exists(staging)) Directory.Delete(staging, recursive: true);
            if (!Directory.Exists(full) && Directory.Exists(old)) Directory.Move(old, full); // put the earlier export back
            throw;
        }
    }
}
