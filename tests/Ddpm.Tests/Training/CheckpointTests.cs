using System.Text;
using Ddpm.Models;
using Ddpm.Training;
using static TorchSharp.torch;

namespace Ddpm.Tests.Training;

public class CheckpointTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("ckpt");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string SaveTiny(string name = "model.ckpt")
    {
        var config = TrainingFixtures.TinyConfig(maxSteps: 7);
        using var model = new UNet(config.Model);
        var path = Path.Combine(_dir, name);
        Checkpoint.Save(path, model, config, epoch: 3, step: 42, stepInEpoch: 2);
        return path;
    }

    [Fact]
    public void Save_then_LoadModel_gives_bit_identical_weights_and_the_same_config()
    {
        using var scope = NewDisposeScope();
        var config = TrainingFixtures.TinyConfig(maxSteps: 7, lr: 3e-4, seed: 9);
        using var model = new UNet(config.Model);
        var path = Path.Combine(_dir, "sub", "round.ckpt");
        Checkpoint.Save(path, model, config, epoch: 3, step: 42, stepInEpoch: 2);
        Assert.True(File.Exists(path));
        Assert.Empty(Directory.GetFiles(Path.GetDirectoryName(path)!, "*.tmp-*"));

        var (loaded, loadedConfig, manifest) = Checkpoint.LoadModel(path);
        using var _ = loaded;
        var a = model.state_dict();
        var b = loaded.state_dict();
        Assert.Equal(a.Keys.Order(StringComparer.Ordinal), b.Keys.Order(StringComparer.Ordinal));
        foreach (var key in a.Keys)
        {
            Assert.Equal(a[key].shape, b[key].shape);
            Assert.True(a[key].eq(b[key]).all().item<bool>(), $"{key} changed in the round trip");
        }
        Assert.Equal(config.ToYaml(), loadedConfig.ToYaml());
        Assert.Equal(config.Model.DownChannels, loadedConfig.Model.DownChannels);
        Assert.Equal(3e-4, loadedConfig.Train.Lr);
        Assert.Equal(9, loadedConfig.Train.Seed);
        Assert.Equal(50, loadedConfig.Diffusion.NumTimesteps);
        Assert.Equal(3, manifest.Epoch);
        Assert.Equal(42, manifest.Step);
        Assert.Equal(2, manifest.StepInEpoch);
        Assert.Equal(model.ParameterCount(), manifest.ParameterCount);
    }

    [Fact]
    public void A_missing_file_throws_CheckpointException_naming_the_path()
    {
        var path = Path.Combine(_dir, "nope.ckpt");
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.LoadModel(path));
        Assert.Contains(path, e.Message);
        Assert.Equal(path, e.Path);
    }

    [Fact]
    public void A_truncated_file_throws_CheckpointException_naming_the_path()
    {
        var path = SaveTiny();
        var bytes = File.ReadAllBytes(path);
        var truncated = Path.Combine(_dir, "truncated.ckpt");
        File.WriteAllBytes(truncated, bytes.AsSpan(0, bytes.Length / 2).ToArray());
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.LoadModel(truncated));
        Assert.Contains(truncated, e.Message);
    }

    [Fact]
    public void A_corrupted_byte_in_the_weights_throws_CheckpointException_naming_the_path()
    {
        var path = SaveTiny();
        var bytes = File.ReadAllBytes(path);
        // Entries are stored uncompressed: find model.safetensors' local header and flip a byte inside its data.
        var name = Encoding.ASCII.GetBytes("model.safetensors");
        // (The name also occurs in manifest.json's checksum list: take the occurrence after a local file header.)
        int at = -1;
        for (int from = 0; at < 0;)
        {
            int hit = bytes.AsSpan(from).IndexOf(name);
            Assert.True(hit >= 0, "model.safetensors entry not found");
            hit += from;
            if (hit >= 30 && BitConverter.ToUInt32(bytes, hit - 30) == 0x04034b50u) at = hit;
            from = hit + 1;
        }
        int header = at - 30;
        int extra = BitConverter.ToUInt16(bytes, header + 28);
        int dataStart = at + name.Length + extra;
        int size = BitConverter.ToInt32(bytes, header + 18);
        Assert.True(size > 10_000, $"unexpected entry size {size}");
        bytes[dataStart + size / 2] ^= 0x5A;
        var corrupt = Path.Combine(_dir, "corrupt.ckpt");
        File.WriteAllBytes(corrupt, bytes);

        var e = Assert.Throws<CheckpointException>(() => Checkpoint.LoadModel(corrupt));
        Assert.Contains(corrupt, e.Message);
        Assert.Contains("model.safetensors", e.Message);
    }

    [Fact]
    public void A_file_that_is_not_a_checkpoint_throws_CheckpointException()
    {
        var path = Path.Combine(_dir, "text.ckpt");
        File.WriteAllText(path, "hello, not a zip");
        var e = Assert.Throws<CheckpointException>(() => Checkpoint.LoadModel(path));
        Assert.Contains(path, e.Message);
    }

    [Fact]
    public void A_weights_only_checkpoint_cannot_resume_training()
    {
        var path = SaveTiny();
        var e = Assert.Throws<CheckpointException>(() => Trainer.Resume(path, new Device("cpu")));
        Assert.Contains(path, e.Message);
    }
}
