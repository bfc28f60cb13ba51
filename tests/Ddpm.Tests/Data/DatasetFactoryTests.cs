using Ddpm.Configuration;
using Ddpm.Data;
using SkiaSharp;
using Xunit;

namespace Ddpm.Tests.Data;

public sealed class DatasetFactoryTests : IDisposable
{
    private readonly TempFolder _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Idx_files_load_when_they_match_the_model()
    {
        File.WriteAllBytes(_dir.File("img.gz"), IdxBytes.Gzip(IdxBytes.Images(3, 28, 28, i => (byte)i)));
        File.WriteAllBytes(_dir.File("lbl"), IdxBytes.Labels(4, 5, 6));
        var options = new DatasetOptions { Name = "idx", Images = _dir.File("img.gz"), Labels = _dir.File("lbl") };

        using var set = DatasetFactory.Load(options, new UNetOptions());

        Assert.Equal([3L, 1, 28, 28], set.Images.shape);
        Assert.Equal([4L, 5, 6], set.Labels!.data<long>().ToArray());
    }

    [Fact]
    public void Images_that_do_not_match_the_model_are_an_error_naming_both_shapes()
    {
        File.WriteAllBytes(_dir.File("img"), IdxBytes.Images(2, 28, 28, _ => 0));
        var options = new DatasetOptions { Name = "idx", Images = _dir.File("img") };
        var model = new UNetOptions { ImChannels = 3, ImSize = 32 };

        var e = Assert.Throws<DataException>(() => DatasetFactory.Load(options, model));

        Assert.Equal(_dir.File("img"), e.Path);
        Assert.Contains("holds 1-channel 28×28 images but model_params expects im_channels 3, im_size 32", e.Message);
    }

    [Fact]
    public void Without_a_name_im_path_is_an_image_folder_resized_to_the_model()
    {
        TestImages.Solid(_dir.File("0/a.png"), 64, 48, new SKColor(0, 0, 255));
        var options = new DatasetOptions { ImPath = _dir.Path };

        using var set = DatasetFactory.Load(options, new UNetOptions { ImChannels = 3, ImSize = 32 });

        Assert.Equal(DatasetKind.Folder, options.Kind);
        Assert.Equal([1L, 3, 32, 32], set.Images.shape);
        Assert.Equal(255, set.Images[0, 2, 16, 16].item<byte>());
    }

    [Fact]
    public void Dataset_keys_parse_validate_and_round_trip_through_yaml()
    {
        var config = DdpmConfig.Parse("""
            dataset_params:
              name: idx
              images: data/x.gz
              labels: data/y.gz
              split: test
              random_flip: true
            """);

        Assert.Equal(DatasetKind.Idx, config.Dataset.Kind);
        Assert.Equal("data/x.gz", config.Dataset.Images);
        Assert.Equal("data/y.gz", config.Dataset.Labels);
        Assert.Equal(DatasetSplit.Test, config.Dataset.Split);
        Assert.True(config.Dataset.RandomFlip);
        Assert.Equal(config.Dataset, DdpmConfig.Parse(config.ToYaml()).Dataset);

        var unknown = Assert.Throws<ConfigException>(() => DdpmConfig.Parse("dataset_params:\n  name: imagenet\n"));
        Assert.Contains("unknown dataset 'imagenet'", unknown.Message);
        var noImages = Assert.Throws<ConfigException>(() => DdpmConfig.Parse("dataset_params:\n  name: idx\n"));
        Assert.Contains("dataset_params.images", noImages.Message);
        var badFlip = Assert.Throws<ConfigException>(() => DdpmConfig.Parse("dataset_params:\n  random_flip: maybe\n"));
        Assert.Contains("expected true or false", badFlip.Message);
    }

    [Fact]
    public void The_cifar10_config_describes_a_3_channel_32_pixel_model_reading_cifar10()
    {
        var dir = AppContext.BaseDirectory;
        while (!File.Exists(Path.Combine(dir, "Ddpm.slnx"))) dir = Path.GetDirectoryName(dir)!;

        var config = DdpmConfig.Load(Path.Combine(dir, "configs", "cifar10.yaml"));

        Assert.Equal(DatasetKind.Cifar10, config.Dataset.Kind);
        Assert.Equal(3, config.Model.ImChannels);
        Assert.Equal(32, config.Model.ImSize);
        Assert.Equal([32, 64, 128, 256], config.Model.DownChannels);
        Assert.Equal([256, 256, 128], config.Model.MidChannels);
        Assert.Equal([true, true, false], config.Model.DownSample);
    }
}
