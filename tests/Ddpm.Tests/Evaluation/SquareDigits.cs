using Ddpm.Data;
using static TorchSharp.torch;

namespace Ddpm.Tests.Evaluation;

/// <summary>A tiny digit-like labelled set for the classifier and the evaluator (MNIST itself is not in a fresh
/// clone).</summary>
internal static class SquareDigits
{
    /// <summary>Class k: a bright 6×6 square at one of 10 positions, plus pixel noise; uint8 [N, 1, 28, 28].</summary>
    public static ImageDataset Make(int n, ulong seed)
    {
        using var g = new Generator(seed, new Device("cpu"));
        var labels = randint(0, 10, [n], dtype: int64, generator: g);
        var images = rand([n, 1, 28, 28], generator: g) * 60;
        var l = labels.data<long>().ToArray();
        for (int i = 0; i < n; i++)
        {
            int r = (int)(l[i] / 5) * 12 + 4, c = (int)(l[i] % 5) * 5 + 1;
            images[i, 0, TensorIndex.Slice(r, r + 6), TensorIndex.Slice(c, c + 6)] = tensor(250f);
        }
        return new ImageDataset(images.to(ScalarType.Byte), labels, "squares");
    }
}
