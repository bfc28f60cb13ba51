using System.Text.Json;
using Ddpm.Configuration;
using Ddpm.Training;

namespace Ddpm.Tests.Cli;

/// <summary><c>ddpm bench</c> on the CPU with the tiny model, and <c>train_params.precision</c> through the
/// CLI.</summary>
[Collection(GlobalRngCollection.Name)]
public class BenchAndPrecisionCliTests : IDisposable
{
    private readonly string _dir = TestPaths.TempDir("bench");

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string Config(string extraTrain = "")
    {
        var path = Path.Combine(_dir, $"tiny-{Guid.NewGuid():N}.yaml");
        File.WriteAllText(path, TinyCli.Yaml(imSize: 8, extraTrain: extraTrain));
        return path;
    }

    [Fact]
    public void Bench_measures_every_batch_size_through_the_trainer_and_writes_its_settings()
    {
        var json = Path.Combine(_dir, "bench.json");
        Assert.Equal(0, TinyCli.Run("bench", "--config", Config(), "--device", "cpu", "--batch-sizes", "2,4", "--repeats", "2", "--steps", "1",
            "--warmup", "1", "--sample-batch", "2", "--sample-full", "--precision", "bf16", "--out", json));
        using var report = JsonDocument.Parse(File.ReadAllText(json));
        var root = report.RootElement;
        Assert.Equal("cpu", root.GetProperty("Device").GetString());
        Assert.Equal("flat", root.GetProperty("Settings").GetProperty("Optimizer").GetString());
        Assert.Equal("bf16", root.GetProperty("Settings").GetProperty("Precision").GetString());
        Assert.Equal(1, root.GetProperty("Settings").GetProperty("SyncEvery").GetInt32());
        var training = root.GetProperty("Training").EnumerateArray().ToArray();
        Assert.Equal(new[] { 2, 4 }, training.Select(t => t.GetProperty("Batch").GetInt32()));
        Assert.All(training, t =>
        {
            Assert.Equal(2, t.GetProperty("ImagesPerSecond").GetArrayLength());
            Assert.True(t.GetProperty("MedianImagesPerSecond").GetDouble() > 0);
        });
        var sampling = root.GetProperty("Sampling").EnumerateArray().Single();
        Assert.Equal(20, sampling.GetProperty("FullSteps").GetInt32()); // T of the tiny config
        Assert.True(sampling.GetProperty("FullSeconds").GetDouble() > 0);
        Assert.True(sampling.GetProperty("MedianMsPerStep").GetDouble() > 0);
    }

    [Fact]
    public void Bench_rejects_unknown_settings_and_the_removed_per_tensor_optimizer()
    {
        var config = Config();
        string Out() => Path.Combine(_dir, $"{Guid.NewGuid():N}.json");
        Assert.Equal(2, TinyCli.Run("bench", "--config", config, "--device", "cpu", "--precision", "fp8", "--out", Out()));
        Assert.Equal(2, TinyCli.Run("bench", "--config", config, "--device", "cpu", "--sync-every", "0", "--out", Out()));
        Assert.Equal(2, TinyCli.Run("bench", "--config", config, "--device", "cpu", "--batch-sizes", "0", "--out", Out()));
        Assert.Equal(2, TinyCli.Run("bench", "--config", config, "--device", "tpu", "--out", Out()));
        var perTensor = Out();
        Assert.Equal(2, TinyCli.Run("bench", "--config", config, "--device", "cpu", "--optimizer", "per-tensor",
            "--batch-sizes", "2", "--repeats", "1", "--steps", "1", "--warmup", "0", "--no-sample", "--out", perTensor));
        Assert.False(File.Exists(perTensor), "a refused bench left a report behind");
        // A failure after the first measurement (a batch that cannot fit in memory) leaves no report either.
        var failed = Out();
        Assert.Equal(1, TinyCli.Run("bench", "--config", config, "--device", "cpu", "--batch-sizes", "2,100000000",
            "--repeats", "1", "--steps", "1", "--warmup", "0", "--no-sample", "--out", failed));
        Assert.False(File.Exists(failed), "a failed bench left a report behind");
    }

    [Fact]
    public void Training_with_precision_bf16_saves_it_in_the_checkpoint_and_resumes()
    {
        var config = Config("  precision: bf16");
        var run = Path.Combine(_dir, "run");
        Assert.Equal(0, TinyCli.Run("train", "--config", config, "--out", run, "--max-steps", "2", "--device", "cpu"));
        var ckpt = Path.Combine(run, "checkpoint.ckpt");
        Assert.Equal(Precision.Bf16, DdpmConfig.Parse(Checkpoint.ReadManifest(ckpt).ConfigYaml).Train.Precision);
        Assert.Equal(0, TinyCli.Run("train", "--config", config, "--out", run, "--max-steps", "4", "--resume", "--device", "cpu"));
        Assert.Equal(4, Checkpoint.ReadManifest(ckpt).Step);
        // Weights are saved in float32 (the master copy), so fp32 tools load them.
        var (model, _, _) = Checkpoint.LoadModel(ckpt);
        using (model) Assert.All(model.parameters(), p => Assert.Equal(TorchSharp.torch.ScalarType.Float32, p.dtype));
    }

    [Fact]
    public void The_precision_key_round_trips_and_an_unknown_value_names_the_key()
    {
        var config = DdpmConfig.Parse("train_params:\n  precision: bf16\n");
        Assert.Equal(Precision.Bf16, config.Train.Precision);
        Assert.Equal(Precision.Bf16, DdpmConfig.Parse(config.ToYaml()).Train.Precision);
        Assert.Equal(Precision.Fp32, new DdpmConfig().Train.Precision);
        var e = Assert.Throws<ConfigException>(() => DdpmConfig.Parse("train_params:\n  precision: fp16\n"));
        Assert.Equal("train_params.precision", e.Key);
        Assert.Contains("fp16", e.Message);
    }
}
