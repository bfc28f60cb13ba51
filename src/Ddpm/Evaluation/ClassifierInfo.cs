namespace Ddpm.Evaluation;

/// <summary>What <c>classifier.json</c> records beside the cached weights: how it was trained and how well it
/// does.</summary>
public sealed record ClassifierInfo
{
    public const int CurrentFormat = 1;
    public int Format { get; init; } = CurrentFormat;
    public string Architecture { get; init; } = "lenet5-wide: conv5x5(32)-pool-conv5x5(64)-pool-fc120-fc84-fc10, relu";
    public int FeatureDim { get; init; } = MnistClassifier.FeatureDim;
    /// <summary>Share of the MNIST test set classified correctly, in [0, 1].</summary>
    public double TestAccuracy { get; init; }
    public long TestImages { get; init; }
    public long TrainImages { get; init; }
    public int Epochs { get; init; }
    public int BatchSize { get; init; }
    public double Lr { get; init; }
    public long Seed { get; init; }
    public double TrainSeconds { get; init; }
    public DateTimeOffset TrainedAt { get; init; }
}
