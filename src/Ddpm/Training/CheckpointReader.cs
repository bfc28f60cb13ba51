using System.IO.Compression;
using System.Text.Json;
using Ddpm.Configuration;
using Ddpm.Models;
using Ddpm.Runtime;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>
/// One open <see cref="Checkpoint"/> archive. Opening reads and checks the manifest; the stored config is parsed once,
/// when first asked for; each entry is read and verified against the manifest's SHA-256 when loaded. Everything comes
/// through the one descriptor opened first: the weights, the EMA, the optimizer and RNG state are those of one file
/// even when training replaces or prunes the path meanwhile. Every failure is a CheckpointException naming the file.
/// </summary>
public sealed class CheckpointReader : IDisposable
{
    private readonly ZipArchive _zip;
    private DdpmConfig? _config;

    /// <summary>The file this reader has open.</summary>
    public string Path { get; }
    /// <summary>The manifest, read and checked on open.</summary>
    public CheckpointManifest Manifest { get; }

    private CheckpointReader(string path, ZipArchive zip, CheckpointManifest manifest)
    {
        Path = path;
        _zip = zip;
        Manifest = manifest;
    }

    /// <summary>
    /// Opens <paramref name="path"/> (once: every later read goes through that descriptor) and reads its manifest.
    /// </summary>
    public static CheckpointReader Open(string path)
    {
        TorchSharpPatch.EnsureApplied();
        if (IO.PathCheck.FileProblem(path) is { } problem) throw new CheckpointException(path, problem);
        FileStream file;
        try { file = IO.RegularFile.OpenRead(path); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new CheckpointException(path, "cannot be read: " + e.Message, e);
        }
        return Open(file, path);
    }

    /// <summary>
    /// Reads the checkpoint in <paramref name="file"/> (named <paramref name="path"/> in messages); the reader owns the
    /// stream.
    /// </summary>
    internal static CheckpointReader Open(Stream file, string path)
    {
        ZipArchive? zip = null;
        try
        {
            zip = new ZipArchive(file, ZipArchiveMode.Read, leaveOpen: false);
            _ = zip.Entries.Count; // reads the whole central directory now, inside this handler
            return new CheckpointReader(path, zip, ReadManifest(path, zip));
        }
        catch (InvalidDataException e)
        {
            zip?.Dispose();
            throw new CheckpointException(path, "not a ddpm checkpoint (truncated or not a zip archive)", e);
        }
        catch (IOException e)
        {
            zip?.Dispose();
            throw new CheckpointException(path, "cannot be read: " + e.Message, e);
        }
        catch
        {
            zip?.Dispose();
            throw;
        }
        finally
        {
            if (zip is null) file.Dispose();
        }
    }

    /// <summary>The experiment config stored with the weights, parsed and validated (once).</summary>
    public DdpmConfig Config
    {
        get
        {
            if (_config is not null) return _config;
            try { return _config = DdpmConfig.Parse(Manifest.ConfigYaml); }
            catch (ConfigException e) { throw new CheckpointException(Path, "its stored config is invalid: " + e.Message, e); }
        }
    }

    /// <summary>Whether the checkpoint holds an exponential moving average of the weights.</summary>
    public bool HasEma => Manifest.Sha256.ContainsKey(Checkpoint.EmaEntry);

    /// <summary>Whether the checkpoint holds optimizer and RNG state (so training can resume from it).</summary>
    public bool HasTrainingState =>
        Manifest.Sha256.ContainsKey(Checkpoint.OptimizerEntry) && Manifest.Sha256.ContainsKey(Checkpoint.RngEntry);

    /// <summary>A U-Net built from <see cref="Config"/> holding the checkpoint's weights (the caller disposes
    /// it).</summary>
    public UNet LoadModel()
    {
        var model = new UNet(Config.Model);
        try
        {
            SafetensorsWeights.LoadInto(model, ReadVerified(Checkpoint.ModelEntry), Path);
            return model;
        }
        catch (Exception e)
        {
            model.Dispose();
            if (e is CheckpointException) throw;
            throw new CheckpointException(Path, "its weights do not fit the model its config describes: " + SafetensorsWeights.WithoutBacktrace(e.Message), e);
        }
    }

    /// <summary>Loads the EMA weights into <paramref name="into"/> (a U-Net of the checkpoint's config).</summary>
    public void LoadEmaInto(UNet into)
    {
        if (!HasEma) throw new CheckpointException(Path, "holds no EMA weights");
        try
        {
            SafetensorsWeights.LoadInto(into, ReadVerified(Checkpoint.EmaEntry), Path);
        }
        catch (Exception e) when (e is not CheckpointException)
        {
            throw new CheckpointException(Path, "its EMA weights do not fit the model: " + SafetensorsWeights.WithoutBacktrace(e.Message), e);
        }
    }

    /// <summary>Restores the optimizer and generator state saved with <see cref="Checkpoint.Save"/>.</summary>
    public void LoadTrainingState(Checkpoint.TrainingState into)
    {
        if (!HasTrainingState)
            throw new CheckpointException(Path, "holds weights only (no optimizer/RNG state), so training cannot resume from it");
        try
        {
            using (var s = new MemoryStream(ReadVerified(Checkpoint.OptimizerEntry)))
            using (var r = new BinaryReader(s))
                into.Optimizer.load_state_dict(r);
            using var state = tensor(ReadVerified(Checkpoint.RngEntry), dtype: ScalarType.Byte);
            into.Generator.set_state(state);
        }
        catch (Exception e) when (e is not CheckpointException)
        {
            throw new CheckpointException(Path, "its training state could not be restored: " + e.Message, e);
        }
    }

    public void Dispose() => _zip.Dispose();

    /// <summary>The manifest holds a config of at most 1 MB and a few checksums.</summary>
    private const long MaxManifestBytes = 4L << 20;

    /// <summary>
    /// The most an entry may inflate to, from the size of the model the stored config describes (twice the estimated
    /// weights per copy, plus room for headers): a crafted entry that declares or inflates to more is refused before it
    /// is read.
    /// </summary>
    private long MaxEntryBytes(string name)
    {
        if (name == Checkpoint.RngEntry) return 1L << 20;
        long weights = MemoryEstimate.For(Config).Parameters * 4 * 2 + (16L << 20);
        return name == Checkpoint.OptimizerEntry ? 4 * weights : weights;
    }

    private static CheckpointManifest ReadManifest(string path, ZipArchive zip)
    {
        var entry = zip.GetEntry(Checkpoint.ManifestEntry) ?? throw new CheckpointException(path, "has no manifest.json");
        try
        {
            var bytes = IO.BoundedZip.ReadAll(entry, MaxManifestBytes);
            var m = JsonSerializer.Deserialize<CheckpointManifest>(bytes, Checkpoint.Json) ?? throw new CheckpointException(path, "empty manifest");
            if (m.Format is < 1 or > CheckpointManifest.CurrentFormat)
                throw new CheckpointException(path, $"format {m.Format} is not supported (this build reads 1 to {CheckpointManifest.CurrentFormat})");
            if (m.Sha256 is null || m.ConfigYaml is null) throw new CheckpointException(path, "manifest lacks sha256 or config_yaml");
            if (!m.Sha256.ContainsKey(Checkpoint.ModelEntry)) throw new CheckpointException(path, "manifest lists no model weights");
            // Format 2 covers the stored config by its own checksum; format 1 (older checkpoints) has none and still
            // loads.
            if (m.Format >= 2 && m.ConfigSha256 != Checkpoint.Sha256Hex(System.Text.Encoding.UTF8.GetBytes(m.ConfigYaml)))
                throw new CheckpointException(path, "its stored config fails its checksum (file corrupt or edited)");
            return m;
        }
        catch (Exception e) when (e is JsonException or InvalidDataException or IOException)
        {
            throw new CheckpointException(path, "manifest is corrupt: " + e.Message, e);
        }
    }

    private byte[] ReadVerified(string name)
    {
        var entry = _zip.GetEntry(name) ?? throw new CheckpointException(Path, $"entry {name} is missing");
        byte[] bytes;
        try
        {
            bytes = IO.BoundedZip.ReadAll(entry, MaxEntryBytes(name));
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            throw new CheckpointException(Path, $"entry {name} is corrupt: {e.Message}", e);
        }
        if (!Manifest.Sha256.TryGetValue(name, out var expected) || expected != Checkpoint.Sha256Hex(bytes))
            throw new CheckpointException(Path, $"entry {name} fails its checksum (file corrupt)");
        return bytes;
    }
}
