using Ddpm.Runtime;
using static TorchSharp.torch;

namespace Ddpm.Data;

/// <summary>
/// A whole image set in memory as one uint8 tensor [N, C, H, W] on the CPU (MNIST train ≈ 47 MB), with optional
/// int64 labels [N]. Batches are gathered by index and converted once per batch: no per-sample tensors.
/// </summary>
public sealed class ImageDataset : IDisposable
{
    /// <summary>uint8 [N, C, H, W], pixel values 0..255.</summary>
    public Tensor Images { get; }
    /// <summary>int64 [N], or null for unlabelled sets.</summary>
    public Tensor? Labels { get; }
    /// <summary>Where the data came from, for messages and logs.</summary>
    public string Description { get; }

    public long Count => Images.shape[0];
    public int Channels => (int)Images.shape[1];
    public int Height => (int)Images.shape[2];
    public int Width => (int)Images.shape[3];

    public ImageDataset(Tensor images, Tensor? labels, string description)
    {
        TorchSharpPatch.EnsureApplied();
        if (images.dtype != ScalarType.Byte || images.dim() != 4)
            throw new ArgumentException($"images must be uint8 [N, C, H, W], got {images.dtype} [{string.Join(", ", images.shape)}]");
        if (labels is not null && (labels.dim() != 1 || labels.shape[0] != images.shape[0]))
            throw new ArgumentException($"labels must be [N] with N = {images.shape[0]}, got [{string.Join(", ", labels.shape)}]");
        Images = images.DetachFromDisposeScope();
        Labels = labels?.to(int64).DetachFromDisposeScope();
        Description = description;
    }

    /// <summary>
    /// The images at <paramref name="indices"/> as float32 in [−1, 1] (the seed: 2·x/255 − 1) on
    /// <paramref name="device"/>. The uint8 batch is copied without blocking (pageable memory is staged by the driver
    /// at once, so the host does not wait for the GPU) and converted there.
    /// </summary>
    public Tensor Batch(Tensor indices, Device? device = null)
    {
        var bytes = Images.index_select(0, indices);
        if (device is not null && device.type != TorchSharp.DeviceType.CPU) bytes = bytes.to(device, non_blocking: true);
        return bytes.to(float32).div_(127.5f).sub_(1.0f);
    }

    /// <summary>
    /// As <see cref="Batch(Tensor, Device?)"/>, and with a <paramref name="flipGenerator"/> (CPU) each image is
    /// mirrored left-right with probability 1/2 (the <c>random_flip</c> augmentation, drawn per batch; null = no
    /// flips).
    /// </summary>
    public Tensor Batch(Tensor indices, Device? device, Generator? flipGenerator)
    {
        if (flipGenerator is null) return Batch(indices, device);
        using var scope = NewDisposeScope();
        return BatchWithFlips(indices, device, DrawFlips(flipGenerator, indices.shape[0])).MoveToOuterDisposeScope();
    }

    /// <summary>The <c>random_flip</c> draws of a batch of <paramref name="count"/> images: each true with probability
    /// 1/2, bool [count] on the CPU.</summary>
    public static Tensor DrawFlips(Generator flipGenerator, long count) => rand(count, generator: flipGenerator).lt(0.5);

    /// <summary>As <see cref="Batch(Tensor, Device?)"/>, with the images where <paramref name="flip"/> (bool [B], CPU)
    /// is true mirrored left-right.</summary>
    public Tensor BatchWithFlips(Tensor indices, Device? device, Tensor? flip)
    {
        if (flip is null) return Batch(indices, device);
        using var scope = NewDisposeScope();
        var bytes = Images.index_select(0, indices);
        bytes = where(flip.view(-1, 1, 1, 1), bytes.flip(3), bytes);
        if (device is not null && device.type != TorchSharp.DeviceType.CPU) bytes = bytes.to(device, non_blocking: true);
        return bytes.to(float32).div_(127.5f).sub_(1.0f).MoveToOuterDisposeScope();
    }

    /// <summary>The labels at <paramref name="indices"/>, or null when unlabelled.</summary>
    public Tensor? BatchLabels(Tensor indices, Device? device = null) =>
        Labels is null ? null : device is null ? Labels.index_select(0, indices) : Labels.index_select(0, indices).to(device, non_blocking: true);

    public void Dispose()
    {
        Images.Dispose();
        Labels?.Dispose();
    }
}
