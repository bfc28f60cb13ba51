namespace Ddpm.Configuration;

/// <summary>Where <c>dataset_params</c> reads images from (the <c>name</c> key).</summary>
public enum DatasetKind
{
    /// <summary>A folder of PNG/JPEG images at <c>im_path</c>: <c>&lt;label&gt;/*.png</c> subfolders or a flat folder
    /// (the reference's layout; the default when <c>name</c> is absent).</summary>
    Folder,
    /// <summary>The original MNIST IDX files, fetched and checksummed into <c>root</c>.</summary>
    Mnist,
    /// <summary>An IDX image file (<c>images</c>) and optional IDX label file (<c>labels</c>), raw or
    /// gzipped.</summary>
    Idx,
    /// <summary>CIFAR-10 binary batches (<c>data_batch_*.bin</c>, <c>test_batch.bin</c>) under <c>root</c>.</summary>
    Cifar10,
    /// <summary>A small generated set of bars (<see cref="Ddpm.Data.SyntheticImages"/>) for tests and smoke
    /// runs.</summary>
    Synthetic,
}
