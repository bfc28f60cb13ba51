namespace Ddpm.Configuration;

/// <summary>
/// <c>dataset_params</c>. The reference has only <c>im_path</c> (a folder of images); <c>name</c> selects a built-in
/// source. With no <c>name</c>, <c>im_path</c> is read as an image folder, as the reference does.
/// </summary>
public sealed record DatasetOptions
{
    /// <summary><c>mnist</c> (downloaded/cached under <see cref="Root"/>), or null for an image folder at <see cref="ImPath"/>.</summary>
    public string? Name { get; init; }
    public string ImPath { get; init; } = "data/train/images";
    /// <summary>Where built-in datasets are cached.</summary>
    public string Root { get; init; } = "data/mnist";
}
