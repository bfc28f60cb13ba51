using Ddpm.Configuration;
using Ddpm.Runtime;

namespace Ddpm.Data;

/// <summary>Opens the dataset that <c>dataset_params</c> names and checks it against the model's <c>im_channels</c> and
/// <c>im_size</c>.</summary>
public static class DatasetFactory
{
    /// <summary>
    /// Loads the set selected by <see cref="DatasetOptions.Kind"/>: MNIST (ensured under <c>root</c> by
    /// <paramref name="mnist"/>, default <see cref="MnistSource"/>), IDX files, CIFAR-10 under <c>root</c>, or an image
    /// folder at <c>im_path</c> (the default, as in the reference). Folder images are resized to the model; every other
    /// source must already match it, else a <see cref="DataException"/> says what was found and what the model expects.
    /// </summary>
    public static ImageDataset Load(DatasetOptions options, UNetOptions model, MnistSource? mnist = null, CancellationToken cancellationToken = default) =>
        LoadAsync(options, model, mnist, cancellationToken).GetAwaiter().GetResult();

    /// <inheritdoc cref="Load"/>
    public static async Task<ImageDataset> LoadAsync(DatasetOptions options, UNetOptions model, MnistSource? mnist = null, CancellationToken cancellationToken = default)
    {
        TorchSharpPatch.EnsureApplied();
        var kind = options.Kind;
        ImageDataset dataset;
        string source;
        switch (kind)
        {
            case DatasetKind.Folder:
                return ImageFolderReader.Read(options.ImPath, model.ImChannels, model.ImSize);
            case DatasetKind.Mnist:
                var files = await (mnist ?? new MnistSource()).EnsureAsync(options.Root, cancellationToken);
                var (images, labels) = options.Split == DatasetSplit.Train
                    ? (files.TrainImages, files.TrainLabels)
                    : (files.TestImages, files.TestLabels);
                dataset = IdxReader.Read(images.Path, labels.Path);
                source = images.Path;
                break;
            case DatasetKind.Idx:
                var imagesPath = options.Images ?? throw new DataException("dataset_params.images", "name: idx needs an IDX image file");
                dataset = IdxReader.Read(imagesPath, options.Labels);
                source = imagesPath;
                break;
            case DatasetKind.Cifar10:
                dataset = Cifar10Reader.Read(options.Root, options.Split);
                source = options.Root;
                break;
            case DatasetKind.Synthetic:
                dataset = SyntheticImages.Create(512, model.ImChannels, model.ImSize);
                source = dataset.Description;
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(options), kind, "unknown dataset kind");
        }
        try
        {
            CheckMatches(dataset, model, source);
            return dataset;
        }
        catch
        {
            dataset.Dispose();
            throw;
        }
    }

    /// <summary>Throws when the images are not [·, im_channels, im_size, im_size].</summary>
    public static void CheckMatches(ImageDataset dataset, UNetOptions model, string source)
    {
        if (dataset.Channels != model.ImChannels || dataset.Height != model.ImSize || dataset.Width != model.ImSize)
            throw new DataException(source,
                $"holds {dataset.Channels}-channel {dataset.Height}×{dataset.Width} images but model_params expects im_channels {model.ImChannels}, im_size {model.ImSize}");
    }
}
