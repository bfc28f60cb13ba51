namespace Ddpm.Evaluation;

/// <summary>Wall-clock seconds of each phase of an evaluation.</summary>
public sealed record EvaluationTimings
{
    public double Setup { get; init; }
    public double Sampling { get; init; }
    public double Metrics { get; init; }
    public double Nll { get; init; }
    public double Total { get; init; }
}
