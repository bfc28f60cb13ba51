using static TorchSharp.torch;

namespace Ddpm.Data;

/// <summary>
/// A small deterministic image set for tests and smoke runs (<c>dataset_params.name: synthetic</c>): each image is a
/// bright axis-aligned bar (horizontal for label 0, vertical for label 1) at a seeded position on black.
/// </summary>
public static class SyntheticImages
{
    public static ImageDataset Create(int count, int channels, int size, long seed = 0)
    {
        if (count < 1) throw new ArgumentOutOfRangeException(nameof(count), "at least one image");
        var rng = new Random(unchecked((int)seed));
        var pixels = new byte[count * channels * size * size];
        var labels = new long[count];
        int thickness = Math.Max(1, size / 7);
        for (int i = 0; i < count; i++)
        {
            int label = i % 2, at = rng.Next(0, size - thickness + 1);
            labels[i] = label;
            for (int c = 0; c < channels; c++)
                for (int y = 0; y < size; y++)
                    for (int x = 0; x < size; x++)
                    {
                        int coord = label == 0 ? y : x;
                        if (coord >= at && coord < at + thickness)
                            pixels[((i * channels + c) * size + y) * size + x] = 255;
                    }
        }
        return new ImageDataset(tensor(pixels, dtype: ScalarType.Byte).reshape(count, channels, size, size),
            tensor(labels, dtype: int64), $"synthetic bars ({count} images, seed {seed})");
    }
}
