using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using Ddpm.Configuration;
using Ddpm.Models;
using TorchSharp.Modules;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>What a checkpoint says about itself (manifest.json inside the archive).</summary>
public sealed record CheckpointManifest
{
    public const int CurrentFormat = 1;
    public int Format { get; init; } = CurrentFormat;
    /// <summary>The full experiment config as YAML, so sampling and resuming need nothing else.</summary>
    public string ConfigYaml { get; init; } = "";
    /// <summary>Epochs completed.</summary>
    public int Epoch { get; init; }
    /// <summary>Optimizer steps completed in total.</summary>
    public long Step { get; init; }
    /// <summary>Steps completed inside <see cref="Epoch"/> + 1 when saved mid-epoch (0 at an epoch boundary).</summary>
    public long StepInEpoch { get; init; }
    public long ParameterCount { get; init; }
    /// <summary>SHA-256 of every other entry, verified on load.</summary>
    public Dictionary<string, string> Sha256 { get; init; } = new();
    public DateTimeOffset SavedAt { get; init; }
}

/// <summary>
/// A self-describing checkpoint: one zip archive holding <c>manifest.json</c> (config, epoch, step, checksums),
/// <c>model.safetensors</c> (the U-Net's weights under the reference's keys), and when training state is saved
/// <c>optimizer.bin</c> (Adam's state) and <c>rng.bin</c> (the training generator's state), and with an EMA of the weights
/// <c>ema.safetensors</c>.
/// Written to a temporary file in the same directory, flushed, then renamed (and the directory fsynced): a crash never leaves a torn file.
/// </summary>
public static class Checkpoint
{
    private const string ManifestEntry = "manifest.json";
    private const string ModelEntry = "model.safetensors";
    private const string OptimizerEntry = "optimizer.bin";
    private const string RngEntry = "rng.bin";
    private const string EmaEntry = "ema.safetensors";

    private static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
    };

    /// <summary>Training state beyond the weights.</summary>
    public sealed record TrainingState(OptimizerHelper Optimizer, Generator Generator);

    /// <summary>
    /// Saves atomically: a temporary sibling is written, flushed to disk, renamed over <paramref name="path"/>, and the
    /// directory is fsynced. A failed write (e.g. a full disk) throws <see cref="CheckpointException"/> and leaves the
    /// previous file at <paramref name="path"/> untouched.
    /// </summary>
    public static void Save(string path, UNet model, DdpmConfig config, int epoch, long step, long stepInEpoch = 0,
        TrainingState? training = null, UNet? ema = null)
    {
        var entries = new Dictionary<string, byte[]>
        {
            [ModelEntry] = ToBytes(s => model.save_safetensors(s, leaveOpen: true)),
        };
        if (ema is not null) entries[EmaEntry] = ToBytes(s => ema.save_safetensors(s, leaveOpen: true));
        if (training is not null)
        {
            entries[OptimizerEntry] = ToBytes(s =>
            {
                using var w = new BinaryWriter(s, System.Text.Encoding.UTF8, leaveOpen: true);
                training.Optimizer.save_state_dict(w);
            });
            using var state = training.Generator.get_state();
            entries[RngEntry] = state.data<byte>().ToArray();
        }
        var manifest = new CheckpointManifest
        {
            ConfigYaml = config.ToYaml(),
            Epoch = epoch,
            Step = step,
            StepInEpoch = stepInEpoch,
            ParameterCount = model.ParameterCount(),
            Sha256 = entries.ToDictionary(e => e.Key, e => Convert.ToHexString(SHA256.HashData(e.Value)).ToLowerInvariant()),
            SavedAt = DateTimeOffset.UtcNow,
        };

        var full = Path.GetFullPath(path);
        Directory.CreateDirectory(Path.GetDirectoryName(full)!);
        var tmp = full + $".tmp-{Environment.ProcessId}";
        try
        {
            using (var file = new FileStream(tmp, FileMode.Create, FileAccess.Write, FileShare.None))
            {
                using (var zip = new ZipArchive(file, ZipArchiveMode.Create, leaveOpen: true))
                {
                    WriteEntry(zip, ManifestEntry, JsonSerializer.SerializeToUtf8Bytes(manifest, Json));
                    foreach (var (name, bytes) in entries) WriteEntry(zip, name, bytes);
                }
                file.Flush(flushToDisk: true);
            }
            File.Move(tmp, full, overwrite: true);
            FileDurability.FsyncDirectory(Path.GetDirectoryName(full)!);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            TryDelete(tmp);
            // A full disk or a failing write: the rename never happened, so what was at the path is untouched.
            throw new CheckpointException(path, $"could not be written ({e.Message}); " +
                (File.Exists(full) ? "the previous checkpoint there is intact" : "no earlier checkpoint was there"), e);
        }
        catch
        {
            TryDelete(tmp);
            throw;
        }
    }

    /// <summary>Reads and verifies the manifest only.</summary>
    public static CheckpointManifest ReadManifest(string path)
    {
        using var zip = Open(path);
        return ReadManifest(path, zip);
    }

    /// <summary>Loads the config and a U-Net with the checkpoint's weights.</summary>
    public static (UNet Model, DdpmConfig Config, CheckpointManifest Manifest) LoadModel(string path)
    {
        using var zip = Open(path);
        var manifest = ReadManifest(path, zip);
        DdpmConfig config;
        try { config = DdpmConfig.Parse(manifest.ConfigYaml); }
        catch (ConfigException e) { throw new CheckpointException(path, "its stored config is invalid: " + e.Message, e); }
        var model = new UNet(config.Model);
        try
        {
            SafetensorsWeights.LoadInto(model, ReadVerified(path, zip, manifest, ModelEntry), path);
        }
        catch (Exception e) when (e is not CheckpointException)
        {
            model.Dispose();
            throw new CheckpointException(path, "its weights do not fit the model its config describes: " + e.Message, e);
        }
        return (model, config, manifest);
    }

    /// <summary>Whether the checkpoint holds an exponential moving average of the weights.</summary>
    public static bool HasEma(string path) => ReadManifest(path).Sha256.ContainsKey(EmaEntry);

    /// <summary>Loads the EMA weights into <paramref name="into"/> (a U-Net of the checkpoint's config).</summary>
    public static void LoadEmaInto(string path, UNet into)
    {
        using var zip = Open(path);
        var manifest = ReadManifest(path, zip);
        if (!manifest.Sha256.ContainsKey(EmaEntry)) throw new CheckpointException(path, "holds no EMA weights");
        try
        {
            SafetensorsWeights.LoadInto(into, ReadVerified(path, zip, manifest, EmaEntry), path);
        }
        catch (Exception e) when (e is not CheckpointException)
        {
            throw new CheckpointException(path, "its EMA weights do not fit the model: " + e.Message, e);
        }
    }

    /// <summary>Restores optimizer and generator state saved with <see cref="Save"/>.</summary>
    public static void LoadTrainingState(string path, TrainingState into)
    {
        using var zip = Open(path);
        var manifest = ReadManifest(path, zip);
        if (!manifest.Sha256.ContainsKey(OptimizerEntry) || !manifest.Sha256.ContainsKey(RngEntry))
            throw new CheckpointException(path, "holds weights only (no optimizer/RNG state), so training cannot resume from it");
        try
        {
            using (var s = new MemoryStream(ReadVerified(path, zip, manifest, OptimizerEntry)))
            using (var r = new BinaryReader(s))
                into.Optimizer.load_state_dict(r);
            var rng = ReadVerified(path, zip, manifest, RngEntry);
            using var state = tensor(rng, dtype: ScalarType.Byte);
            into.Generator.set_state(state);
        }
        catch (Exception e) when (e is not CheckpointException)
        {
            throw new CheckpointException(path, "its training state could not be restored: " + e.Message, e);
        }
    }

    private static ZipArchive Open(string path)
    {
        if (!File.Exists(path)) throw new CheckpointException(path, "file does not exist");
        ZipArchive? zip = null;
        try
        {
            zip = ZipFile.OpenRead(path);
            _ = zip.Entries.Count; // reads the whole central directory now, inside this handler
            return zip;
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
    }

    private static CheckpointManifest ReadManifest(string path, ZipArchive zip)
    {
        var entry = zip.GetEntry(ManifestEntry) ?? throw new CheckpointException(path, "has no manifest.json");
        try
        {
            using var s = entry.Open();
            var m = JsonSerializer.Deserialize<CheckpointManifest>(s, Json) ?? throw new CheckpointException(path, "empty manifest");
            if (m.Format != CheckpointManifest.CurrentFormat)
                throw new CheckpointException(path, $"format {m.Format} is not supported (this build reads {CheckpointManifest.CurrentFormat})");
            if (m.Sha256 is null || m.ConfigYaml is null) throw new CheckpointException(path, "manifest lacks sha256 or config_yaml");
            if (!m.Sha256.ContainsKey(ModelEntry)) throw new CheckpointException(path, "manifest lists no model weights");
            return m;
        }
        catch (Exception e) when (e is JsonException or InvalidDataException or IOException)
        {
            throw new CheckpointException(path, "manifest is corrupt: " + e.Message, e);
        }
    }

    private static byte[] ReadVerified(string path, ZipArchive zip, CheckpointManifest manifest, string name)
    {
        var entry = zip.GetEntry(name) ?? throw new CheckpointException(path, $"entry {name} is missing");
        byte[] bytes;
        try
        {
            using var s = entry.Open();
            using var ms = new MemoryStream();
            s.CopyTo(ms);
            bytes = ms.ToArray();
        }
        catch (Exception e) when (e is InvalidDataException or IOException)
        {
            throw new CheckpointException(path, $"entry {name} is corrupt: {e.Message}", e);
        }
        var sha = Convert.ToHexString(SHA256.HashData(bytes)).ToLowerInvariant();
        if (!manifest.Sha256.TryGetValue(name, out var expected) || expected != sha)
            throw new CheckpointException(path, $"entry {name} fails its checksum (file corrupt)");
        return bytes;
    }

    private static void WriteEntry(ZipArchive zip, string name, byte[] bytes)
    {
        var entry = zip.CreateEntry(name, CompressionLevel.NoCompression);
        using var s = entry.Open();
        s.Write(bytes);
    }

    private static byte[] ToBytes(Action<Stream> write)
    {
        using var ms = new MemoryStream();
        write(ms);
        return ms.ToArray();
    }

    private static void TryDelete(string path)
    {
        try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
