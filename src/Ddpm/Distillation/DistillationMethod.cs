namespace Ddpm.Distillation;

/// <summary>How a teacher is distilled into a few-step student.</summary>
public enum DistillationMethod
{
    /// <summary>
    /// Progressive distillation (Salimans &amp; Ho 2022): rounds that halve the DDIM steps, each student matching two
    /// teacher steps in one.
    /// </summary>
    Progressive,
}
