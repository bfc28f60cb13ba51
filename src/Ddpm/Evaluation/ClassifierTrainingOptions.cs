namespace Ddpm.Evaluation;

/// <summary>How <see cref="ClassifierTraining"/> fits the MNIST classifier: Adam, cross-entropy, lr × 0.1 for the last
/// epoch.</summary>
public sealed record ClassifierTrainingOptions
{
    public int Epochs { get; init; } = 4;
    public int BatchSize { get; init; } = 128;
    public double Lr { get; init; } = 1e-3;
    public long Seed { get; init; } = 0;
    /// <summary>Train on at most this many images (0 = all); tests use a few hundred.</summary>
    public int MaxTrainImages { get; init; } = 0;

    public void Validate()
    {
        if (Epochs < 1) throw new ArgumentOutOfRangeException(nameof(Epochs), Epochs, "must be >= 1");
        if (BatchSize < 1) throw new ArgumentOutOfRangeException(nameof(BatchSize), BatchSize, "must be >= 1");
        if (!(Lr > 0)) throw new ArgumentOutOfRangeException(nameof(Lr), Lr, "must be positive");
        if (MaxTrainImages < 0) throw new ArgumentOutOfRangeException(nameof(MaxTrainImages), MaxTrainImages, "must be >= 0");
    }
}
