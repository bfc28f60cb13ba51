namespace Ddpm.Configuration;

/// <summary>
/// <c>dataset_params</c>. The reference has only <c>im_path</c> (a folder of images); <c>name</c> selects a built-in
/// source. With no <c>name</c>, <c>im_path</c> is read as an image folder, as the reference does.
/// </summary>
public sealed record DatasetOptions
{
    /// <summary>The names <c>name</c> accepts, in <see cref="DatasetKind"/> order.</summary>
    public static readonly IReadOnlyList<string> KnownNames = ["folder", "mnist", "idx", "cifar10", "synthetic"];

    /// <summary><c>mnist</c>, <c>idx</c>, <c>folder</c> or <c>cifar10</c>; null reads an image folder at <see cref="ImPath"/>.</summary>
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

    /// <summary><see cref="Name"/> as a <see cref="DatasetKind"/> (absent = <see cref="DatasetKind.Folder"/>).</summary>
    public DatasetKind Kind => Name?.ToLowerInvariant() switch
    {
        null or "folder" => DatasetKind.Folder,
        "mnist" => DatasetKind.Mnist,
        "idx" => DatasetKind.Idx,
        "cifar10" => DatasetKind.Cifar10,
        "synthetic" => DatasetKind.Synthetic,
        _ => throw new ConfigException("dataset_params.name", $"unknown dataset '{Name}' (known: {string.Join(", ", KnownNames)})"),
    };

    /// <summary>Throws <see cref="ConfigException"/> naming the first offending key.</summary>
    public void Validate()
    {
        const string p = "dataset_params.";
        var kind = Kind;
        if (kind == DatasetKind.Idx && string.IsNullOrWhiteSpace(Images))
            throw new ConfigException(p + "images", "name: idx needs the path of an IDX image file in 'images'");
        if (kind != DatasetKind.Idx && (Images is not null || Labels is not null))
            throw new ConfigException(p + (Images is not null ? "images" : "labels"), "only used with name: idx");
        if (kind == DatasetKind.Folder && string.IsNullOrWhiteSpace(ImPath))
            throw new ConfigException(p + "im_path", "must name an image folder");
        if (kind is DatasetKind.Mnist or DatasetKind.Cifar10 && string.IsNullOrWhiteSpace(Root))
            throw new ConfigException(p + "root", $"name: {Name} needs a root folder");
    }
}
