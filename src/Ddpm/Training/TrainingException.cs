namespace Ddpm.Training;

/// <summary>Training cannot go on (e.g. a non-finite loss); the last good checkpoint is left untouched.</summary>
public sealed class TrainingException(string message) : Exception(message);
