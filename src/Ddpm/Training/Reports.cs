namespace Ddpm.Training;

/// <summary>One optimizer step, as the progress display sees it.</summary>
public sealed record StepReport(int Epoch, long Step, long StepInEpoch, long StepsInEpoch, float Loss, double ImagesPerSecond);

/// <summary>One finished (or step-budget-truncated) epoch. Epochs count from 1.</summary>
public sealed record EpochReport(int Epoch, long Step, long Steps, double MeanLoss, double Seconds, double ImagesPerSecond,
    long RssStartBytes, long RssEndBytes, bool Complete);
