using System.IO.Compression;
using System.Security.Cryptography;
using System.Text.Json;
using System.Text.Json.Serialization;
using Ddpm.Configuration;
using Ddpm.IO;
using Ddpm.Models;
using Ddpm.Runtime;
using TorchSharp.Modules;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>What a checkpoint says about itself (manifest.json inside the archive).</summary>
public sealed record CheckpointManifest
{
    /// <summary>
    /// 2: <see cref="ConfigSha256"/> covers the config. Format 1 (without it) still loads. 3: a distilled student
    /// (<see cref="Distilled"/>), written only for those, so older builds refuse it rather than sample it off its
    /// grid.
    /// </summary>
    public const int CurrentFormat = 3;
    /// <summary>The format of a checkpoint that is not a distilled student.</summary>
    public const int PlainFormat = 2;
    public int Format { get; init; } = PlainFormat;
    /// <summary>The full experiment config as YAML, so sampling and resuming need nothing else.</summary>
    public string ConfigYaml { get; init; } = "";
    /// <summary>SHA-256 of <see cref="ConfigYaml"/>'s UTF-8 bytes, verified on load (format 2; null in format
    /// 1).</summary>
    public string? ConfigSha256 { get; init; }
    /// <summary>Epochs completed.</summary>
    public int Epoch { get; init; }
    /// <summary>Optimizer steps completed in total.</summary>
    public long Step { get; init; }
    /// <summary>Steps completed inside <see cref="Epoch"/> + 1 when saved mid-epoch (0 at an epoch boundary).</summary>
    public long StepInEpoch { get; init; }
    public long ParameterCount { get; init; }
    /// <summary>Processes that trained it data-parallel (1 for one process, and for checkpoints from before the
    /// field).</summary>
    public int WorldSize { get; init; } = 1;
    /// <summary>SHA-256 of every other entry, verified on load.</summary>
    public Dictionary<string, string> Sha256 { get; init; } = new();
    public DateTimeOffset SavedAt { get; init; }
    /// <summary>A distilled student's grid and built-in guidance (format 3), or null for an ordinary model.</summary>
    public Distillation.DistilledGrid? Distilled { get; init; }
    /// <summary>Where the distillation run that wrote this checkpoint stood (to resume it), or null.</summary>
    public Distillation.DistillationState? Distillation { get; init; }
}

/// <summary>
/// A self-describing checkpoint: one zip archive holding <c>manifest.json</c> (config, epoch, step, checksums),
/// <c>model.safetensors</c> (the U-Net's weights under the reference's keys), and when training state is saved
/// <c>optimizer.bin</c> (Adam's state) and <c>rng.bin</c> (the training generator's state), and with an EMA of the
/// weights <c>ema.safetensors</c>. Written atomically (<see cref="AtomicFile"/>): a crash never leaves a torn file.
/// Read with <see cref="CheckpointReader"/> (one open for everything), or with the one-call helpers here.
/// </summary>
public static class Checkpoint
{
    internal const string ManifestEntry = "manifest.json";
    internal const string ModelEntry = "model.safetensors";
    internal const string OptimizerEntry = "optimizer.bin";
    internal const string RngEntry = "rng.bin";
    internal const string EmaEntry = "ema.safetensors";

    internal static readonly JsonSerializerOptions Json = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        AllowDuplicateProperties = false,
        MaxDepth = 8,
    };

    /// <summary>Training state beyond the weights.</summary>
    public sealed record TrainingState(OptimizerHelper Optimizer, Generator Generator);

    /// <summary>
    /// Saves atomically (<see cref="AtomicFile"/>). A failed write (e.g. a full disk) throws
    /// <see cref="CheckpointException"/> and leaves the previous file at <paramref name="path"/> untouched.
    /// </summary>
    public static void Save(string path, UNet model, DdpmConfig config, int epoch, long step, long stepInEpoch = 0,
        TrainingState? training = null, UNet? ema = null, int worldSize = 1,
        Distillation.DistilledGrid? distilled = null, Distillation.DistillationState? distillation = null)
    {
        TorchSharpPatch.EnsureApplied();
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
        var yaml = config.ToYaml();
        var manifest = new CheckpointManifest
        {
            Format = distilled is null ? CheckpointManifest.PlainFormat : CheckpointManifest.CurrentFormat,
            ConfigYaml = yaml,
            ConfigSha256 = Sha256Hex(System.Text.Encoding.UTF8.GetBytes(yaml)),
            Epoch = epoch,
            Step = step,
            StepInEpoch = stepInEpoch,
            ParameterCount = model.ParameterCount(),
            WorldSize = worldSize,
            Sha256 = entries.ToDictionary(e => e.Key, e => Sha256Hex(e.Value)),
            SavedAt = DateTimeOffset.UtcNow,
            Distilled = distilled,
            Distillation = distillation,
        };

        try
        {
            AtomicFile.Write(path, file =>
            {
                using var zip = new ZipArchive(file, ZipArchiveMode.Create, leaveOpen: true);
                WriteEntry(zip, ManifestEntry, JsonSerializer.SerializeToUtf8Bytes(manifest, Json));
                foreach (var (name, bytes) in entries) WriteEntry(zip, name, bytes);
            });
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            // A full disk or a failing write: the rename never happened, so what was at the path is untouched.
            throw new CheckpointException(path, $"could not be written ({e.Message}); " +
                (File.Exists(path) ? "the previous checkpoint there is intact" : "no earlier checkpoint was there"), e);
        }
    }

    /// <summary>Reads and verifies the manifest only.</summary>
    public static CheckpointManifest ReadManifest(string path)
    {
        using var checkpoint = CheckpointReader.Open(path);
        return checkpoint.Manifest;
    }

    /// <summary>Loads the config and a U-Net with the checkpoint's weights.</summary>
    public static (UNet Model, DdpmConfig Config, CheckpointManifest Manifest) LoadModel(string path)
    {
        TorchSharpPatch.EnsureApplied();
        using var checkpoint = CheckpointReader.Open(path);
        return (checkpoint.LoadModel(), checkpoint.Config, checkpoint.Manifest);
    }

    /// <summary>Whether the checkpoint holds an exponential moving average of the weights.</summary>
    public static bool HasEma(string path)
    {
        using var checkpoint = CheckpointReader.Open(path);
        return checkpoint.HasEma;
    }

    /// <summary>Loads the EMA weights into <paramref name="into"/> (a U-Net of the checkpoint's config).</summary>
    public static void LoadEmaInto(string path, UNet into)
    {
        TorchSharpPatch.EnsureApplied();
        using var checkpoint = CheckpointReader.Open(path);
        checkpoint.LoadEmaInto(into);
    }

    internal static string Sha256Hex(byte[] bytes) => Convert.ToHexStringLower(SHA256.HashData(bytes));

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
}
