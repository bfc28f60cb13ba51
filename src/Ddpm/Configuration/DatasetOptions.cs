namespace Ddpm.Configuration;

/// <summary>
/// <c>dataset_params</c>. The reference has only <c>im_path</c> (a folder of images); <c>name</c> selects a built-in
/// source. With no <c>name</c>, <c>im_path</c> is read as an image folder, as the reference does.
/// </summary>
public sealed record DatasetOptions
{
    /// <summary>A <see cref="DatasetKind"/> spelling (<see cref="EnumNames"/>): <c>mnist</c>, <c>idx</c>,
    /// <c>folder</c>, <c>cifar10</c> or <c>synthetic</c>; null reads an image folder at <see cref="ImPath"/>.</summary>
    public string? Name { get; init; }
    /// <summary>The image folder for <see cref="DatasetKind.Folder"/>.</summary>
    public string ImPath { get; init; } = "data/train/images";
    /// <summary>Where built-in datasets are cached (MNIST) or unpacked (CIFAR-10).</summary>
    public string Root { get; init; } = "data/mnist";
    /// <summary>The IDX image file for <see cref="DatasetKind.Idx"/> (raw or <c>.gz</c>).</summary>
    public string? Images { get; init; }
    /// <summary>The IDX label file for <see cref="DatasetKind.Idx"/>, or null for an unlabelled set.</summary>
    public string? Labels { get; init; }
    /// <summary>Training or test part of MNIST / CIFAR-10.</summary>
    public DatasetSplit Split { get; init; } = DatasetSplit.Train;
    /// <summary>Flip each training image left-right with probability 1/2, drawn per batch.</summary>
    public bool RandomFlip { get; init; }

    /// <summary><see cref="Name"/> as a <see cref="DatasetKind"/> (absent =
    /// <see cref="DatasetKind.Folder"/>).</summary>
    public DatasetKind Kind => Name is null ? DatasetKind.Folder
        : EnumNames.TryParse<DatasetKind>(Name, out var kind) ? kind
        : throw new ConfigException("dataset_params.name", EnumNames.Unknown<DatasetKind>(Name, "dataset"));

    /// <summary>Throws <see cref="ConfigException"/> naming the first offending key
    /// (<see cref="ConfigSchema.Dataset"/>).</summary>
    public void Validate() => ConfigSchema.Dataset.Validate(this);
}
