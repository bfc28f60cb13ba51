using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Training;
using SkiaSharp;
using Xunit;
using static TorchSharp.torch;

namespace Ddpm.Tests.Training;

/// <summary>The trainer consumes every data source the data layer offers: a few real steps on each.</summary>
[Collection(GlobalRngCollection.Name)]
public sealed class TrainingOnDataSourcesTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("ddpm-sources-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private static DdpmConfig TinyConfig(DatasetOptions dataset, int channels, int size) => new DdpmConfig
    {
        Dataset = dataset,
        Diffusion = new DiffusionOptions { NumTimesteps = 20 },
        Model = new UNetOptions
        {
            ImChannels = channels, ImSize = size, DownChannels = [8, 16, 16, 16], MidChannels = [16, 16, 16],
            TimeEmbDim = 16, NumDownLayers = 1, NumMidLayers = 1, NumUpLayers = 1, NumHeads = 4,
        },
        Train = new TrainOptions { BatchSize = 4, NumEpochs = 1, MaxSteps = 3, Lr = 1e-3 },
    }.Validate();

    private static EpochReport TrainThreeSteps(DdpmConfig config)
    {
        using var data = DatasetFactory.Load(config.Dataset, config.Model);
        using var trainer = Trainer.Create(config, CPU);
        var report = trainer.TrainEpoch(data)!;
        Assert.Equal(3, report.Steps);
        Assert.Equal(3, trainer.Step);
        Assert.True(double.IsFinite(report.MeanLoss) && report.MeanLoss > 0, $"mean loss {report.MeanLoss}");
        return report;
    }

    [Fact]
    public void An_image_folder_with_label_subfolders_trains_a_few_steps()
    {
        var root = Path.Combine(_dir, "images");
        for (int label = 0; label < 2; label++)
        {
            var folder = Directory.CreateDirectory(Path.Combine(root, label.ToString())).FullName;
            for (int i = 0; i < 6; i++)
            {
                using var bitmap = new SKBitmap(20, 20);
                bitmap.Erase(new SKColor((byte)(40 * i), (byte)(100 * label), 200));
                using var image = SKImage.FromBitmap(bitmap);
                using var png = image.Encode(SKEncodedImageFormat.Png, 100);
                File.WriteAllBytes(Path.Combine(folder, $"{i}.png"), png.ToArray());
            }
        }
        TrainThreeSteps(TinyConfig(new DatasetOptions { ImPath = root }, channels: 1, size: 16));
    }

    [Fact]
    public void A_cifar10_binary_batch_trains_a_few_steps_in_colour()
    {
        var root = Directory.CreateDirectory(Path.Combine(_dir, "cifar")).FullName;
        var rng = new Random(1);
        for (int b = 1; b <= 5; b++)
        {
            var bytes = new byte[4 * 3073];
            rng.NextBytes(bytes);
            for (int r = 0; r < 4; r++) bytes[r * 3073] = (byte)((b + r) % 10);
            File.WriteAllBytes(Path.Combine(root, $"data_batch_{b}.bin"), bytes);
        }
        TrainThreeSteps(TinyConfig(new DatasetOptions { Name = "cifar10", Root = root }, channels: 3, size: 32));
    }
}
