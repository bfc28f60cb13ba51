using System.Buffers.Binary;
using System.IO.Compression;
using System.Text;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Tests.Data;
using Ddpm.Tests.Training;
using Ddpm.Training;
using SkiaSharp;
using TorchSharp.PyBridge;
using Xunit.Abstractions;
using static TorchSharp.torch;

namespace Ddpm.Tests.Reliability;

/// <summary>
/// Each reader gets a few hundred deterministic corruptions of a valid file; every one must end in the project's own
/// error type (DataException, ConfigException, CheckpointException) or a successful load — never another exception, a
/// native fault, a hang or an allocation of a huge declared size. Counts: DDPM_LONG_TESTS=1 multiplies them by 10.
/// </summary>
[Trait(TestCategory.Name, TestCategory.Slow)]
public class ReaderFuzzTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("fuzz");
    private static int Cases(int n) => ChildProcess.LongTests ? 10 * n : n;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private void Report(string reader, int count, (int Rejected, int Loaded) r) =>
        output.WriteLine($"{reader}: {count} corruptions, {r.Rejected} rejected with the project's error, {r.Loaded} loaded");

    private static byte[] Idx(int magic, params int[] dims)
    {
        long items = dims.Aggregate(1L, (a, d) => a * d);
        var b = new byte[4 + 4 * dims.Length + items];
        BinaryPrimitives.WriteInt32BigEndian(b, magic);
        for (int i = 0; i < dims.Length; i++) BinaryPrimitives.WriteInt32BigEndian(b.AsSpan(4 + 4 * i), dims[i]);
        for (long i = 4 + 4 * dims.Length; i < b.Length; i++) b[i] = (byte)(i * 7 % 10);
        return b;
    }

    private static byte[] Gzip(byte[] raw)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Optimal, leaveOpen: true)) gz.Write(raw);
        return ms.ToArray();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Idx_files(bool gzipped)
    {
        var images = Idx(IdxReader.ImageMagic, 6, 5, 5);
        var labels = Idx(IdxReader.LabelMagic, 6);
        if (gzipped) (images, labels) = (Gzip(images), Gzip(labels));
        string imagesPath = Path.Combine(_dir, "images.idx"), labelsPath = Path.Combine(_dir, "labels.idx");
        int n = Cases(300);
        int[] sizeFields = gzipped ? [] : [4, 8, 12];
        File.WriteAllBytes(labelsPath, labels);
        var r1 = Corruptions.Check<DataException>(Corruptions.Of(images, n, 1, sizeFields), bytes =>
        {
            File.WriteAllBytes(imagesPath, bytes);
            IdxReader.Read(imagesPath, labelsPath).Dispose();
        });
        File.WriteAllBytes(imagesPath, images);
        var r2 = Corruptions.Check<DataException>(Corruptions.Of(labels, n / 3, 2, gzipped ? [] : [4]), bytes =>
        {
            File.WriteAllBytes(labelsPath, bytes);
            IdxReader.Read(imagesPath, labelsPath).Dispose();
        });
        Report($"IDX{(gzipped ? " (gzip)" : "")} images", n, r1);
        Report($"IDX{(gzipped ? " (gzip)" : "")} labels", n / 3, r2);
    }

    [Fact]
    public void Yaml_configs()
    {
        var valid = Encoding.UTF8.GetBytes(TinyCli.Yaml(extraTrain: "  on_nonfinite: skip\n  keep_checkpoints: 2\n"));
        int n = Cases(600);
        var r = Corruptions.Check<ConfigException>(Corruptions.Of(valid, n, 3), bytes => DdpmConfig.Parse(Encoding.UTF8.GetString(bytes)));
        Report("YAML config", n, r);
        // Structural oddities that random bytes rarely hit.
        string[] odd =
        [
            "[1, 2]", "? [a, b]\n: 1\n", "train_params:\n  ? [a]\n  : 1\n", "train_params:\n  lr: [1]\n", "train_params:\n  lr: {a: 1}\n",
            "a: &x 1\nb: *y\n", "train_params: &t\n  lr: 1\nmodel_params: *t\n", "train_params:\n  batch_size: 1\n  batch_size: 2\n",
            "model_params:\n  im_size: 99999999999\n", "model_params:\n  down_channels: [8, 99999999999]\n", "\t\t", "%YAML 9.9\n---\na: 1\n",
            "--- !!binary x\n", "train_params: !!map\n  lr: 1e-3\n", "---\n---\n", "train_params:\n  lr: .nan\n", "train_params:\n  lr: 1e400\n",
        ];
        var r2 = Corruptions.Check<ConfigException>(odd.Select(s => (s, Encoding.UTF8.GetBytes(s))), b => DdpmConfig.Parse(Encoding.UTF8.GetString(b)));
        Report("YAML config (structural)", odd.Length, r2);
    }

    [Fact]
    public void Checkpoints()
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: 10) with { Train = TrainingFixtures.TinyConfig(10).Train with { EmaDecay = 0.9 } };
        var path = Path.Combine(_dir, "checkpoint.ckpt");
        var cpu = new Device("cpu");
        using (var trainer = new Trainer(new Ddpm.Models.UNet(config.Model), config, cpu)) trainer.Save(path);
        var valid = File.ReadAllBytes(path);
        // Zip size fields: every local header and central-directory record's sizes (little-endian, but any huge value
        // will do).
        var sizeFields = new List<int>();
        for (int i = 0; i + 4 <= valid.Length; i++)
        {
            uint sig = BinaryPrimitives.ReadUInt32LittleEndian(valid.AsSpan(i));
            if (sig == 0x04034b50) sizeFields.AddRange([i + 18, i + 22, i + 26]);
            if (sig == 0x02014b50) sizeFields.AddRange([i + 20, i + 24, i + 28, i + 42]);
            if (sig == 0x06054b50) sizeFields.AddRange([i + 12, i + 16]);
        }
        int n = Cases(300);
        var r = Corruptions.Check<CheckpointException>(Corruptions.Of(valid, n, 4, sizeFields), bytes =>
        {
            File.WriteAllBytes(path, bytes);
            Checkpoint.ReadManifest(path);
            var (model, _, _) = Checkpoint.LoadModel(path);
            model.Dispose();
            Trainer.Resume(path, cpu).Dispose(); // weights again, Adam state, RNG state and EMA
        });
        Report("checkpoint (zip + manifest)", n, r);

        // The manifest alone (it is what the checksums do not cover): corrupt its JSON inside an otherwise valid
        // archive.
        string manifest;
        File.WriteAllBytes(path, valid);
        using (var zip = ZipFile.OpenRead(path))
        using (var reader = new StreamReader(zip.GetEntry("manifest.json")!.Open()))
            manifest = reader.ReadToEnd();
        int m = Cases(200);
        var r2 = Corruptions.Check<CheckpointException>(Corruptions.Of(Encoding.UTF8.GetBytes(manifest), m, 5), bytes =>
        {
            File.WriteAllBytes(path, valid);
            using (var zip = ZipFile.Open(path, ZipArchiveMode.Update))
            {
                zip.GetEntry("manifest.json")!.Delete();
                using var s = zip.CreateEntry("manifest.json").Open();
                s.Write(bytes);
            }
            var (model, _, _) = Checkpoint.LoadModel(path);
            model.Dispose();
            Trainer.Resume(path, cpu).Dispose();
        });
        Report("checkpoint manifest.json", m, r2);
    }

    [Fact]
    public void Safetensors_weights()
    {
        var options = TrainingFixtures.TinyConfig(1).Model;
        using var model = new Ddpm.Models.UNet(options);
        using var ms = new MemoryStream();
        model.save_safetensors(ms, leaveOpen: true);
        var valid = ms.ToArray();
        long headerLength = BinaryPrimitives.ReadInt64LittleEndian(valid);
        int n = Cases(300);
        var r = Corruptions.Check<CheckpointException>(Corruptions.Of(valid, n, 6, [0, 4, 8 + (int)headerLength / 2]), bytes =>
            SafetensorsWeights.LoadInto(model, bytes, "fuzzed.safetensors"));
        Report("safetensors", n, r);
        var fixture = File.ReadAllBytes(TestPaths.Fixture("small_unet.safetensors"));
        using var fixtureModel = new Ddpm.Models.UNet(Ddpm.Tests.Models.TestModels.FixtureConfig);
        var r2 = Corruptions.Check<CheckpointException>(Corruptions.Of(fixture, n / 3, 7, [0, 4]), bytes =>
            SafetensorsWeights.LoadInto(fixtureModel, bytes, "small_unet.safetensors"));
        Report("safetensors (PyTorch fixture)", n / 3, r2);
    }

    [Theory]
    [InlineData(".png")]
    [InlineData(".jpg")]
    public void Png_and_jpeg_images(string extension)
    {
        var source = Path.Combine(_dir, "source" + extension);
        TestImages.Write(source, 12, 10, (x, y) => new SKColor((byte)(x * 20), (byte)(y * 25), 128));
        var valid = File.ReadAllBytes(source);
        File.Delete(source);
        var folder = Path.Combine(_dir, "images");
        Directory.CreateDirectory(folder);
        var file = Path.Combine(folder, "a" + extension);
        // Declared dimensions: PNG IHDR width/height (offsets 16, 20; the CRC is then wrong unless fixed below), JPEG
        // SOFn.
        var sizeFields = new List<int>();
        if (extension == ".png") sizeFields.AddRange([16, 20]);
        for (int i = 0; i + 9 < valid.Length; i++)
            if (valid[i] == 0xFF && valid[i + 1] is 0xC0 or 0xC2) sizeFields.AddRange([i + 5]);
        int n = Cases(300);
        var cases = Corruptions.Of(valid, n, extension == ".png" ? 8 : 9, sizeFields).Concat(HugeDimensions(valid, extension));
        var r = Corruptions.Check<DataException>(cases, bytes =>
        {
            File.WriteAllBytes(file, bytes);
            ImageFolderReader.Read(folder, 1, 8).Dispose();
        });
        Report($"image folder {extension}", n + 2, r);
    }

    /// <summary>Validly encoded headers declaring 65,535 × 65,535 or 2^31 − 1 × 1 pixels (PNG with a correct IHDR
    /// CRC).</summary>
    private static IEnumerable<(string, byte[])> HugeDimensions(byte[] valid, string extension)
    {
        foreach (var (w, h) in new[] { (65535u, 65535u), (0x7FFFFFFFu, 1u) })
        {
            var b = (byte[])valid.Clone();
            if (extension == ".png")
            {
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(16), w);
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(20), h);
                BinaryPrimitives.WriteUInt32BigEndian(b.AsSpan(29), System.IO.Hashing.Crc32.HashToUInt32(b.AsSpan(12, 17)));
            }
            else
            {
                int sof = Enumerable.Range(0, b.Length - 9).First(i => b[i] == 0xFF && b[i + 1] is 0xC0 or 0xC2);
                BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(sof + 5), (ushort)Math.Min(h, 65535));
                BinaryPrimitives.WriteUInt16BigEndian(b.AsSpan(sof + 7), (ushort)Math.Min(w, 65535));
            }
            yield return ($"declared {w}×{h}", b);
        }
    }
}
