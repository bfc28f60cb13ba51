namespace Ddpm.Data;

/// <summary>The four verified MNIST files in <paramref name="Directory"/>, in <see cref="MnistFileSpec.Originals"/>
/// order.</summary>
public sealed record MnistFiles(string Directory, IReadOnlyList<MnistFile> Files)
{
    /// <summary>60,000 training images (<c>train-images-idx3-ubyte</c>).</summary>
    public MnistFile TrainImages => Find("train-images-idx3-ubyte");
    /// <summary>60,000 training labels (<c>train-labels-idx1-ubyte</c>).</summary>
    public MnistFile TrainLabels => Find("train-labels-idx1-ubyte");
    /// <summary>10,000 test images (<c>t10k-images-idx3-ubyte</c>).</summary>
    public MnistFile TestImages => Find("t10k-images-idx3-ubyte");
    /// <summary>10,000 test labels (<c>t10k-labels-idx1-ubyte</c>).</summary>
    public MnistFile TestLabels => Find("t10k-labels-idx1-ubyte");

    private MnistFile Find(string name) =>
        Files.FirstOrDefault(f => f.Name == name) ?? throw new InvalidOperationException($"no MNIST file '{name}' in {Directory}");
}
