namespace Ddpm.Training;

/// <summary>Training cannot start or go on (e.g. a non-finite loss, a run folder in use); finished checkpoints are left
/// untouched.</summary>
public class TrainingException(string message) : Exception(message);
