namespace Ddpm.Sampling;

/// <summary>
/// What a <see cref="GenerationRequest"/> will do, known before any work (<see cref="ImageGenerator.Plan"/>): the
/// timesteps of each batch, the batches and a memory estimate, e.g. to refuse a request that cannot fit.
/// </summary>
public sealed record GenerationPlan(IReadOnlyList<int> Timesteps, int Batches, int BatchSize, GenerationMemory Memory)
{
    /// <summary>Model evaluations in all (steps × batches; each is one forward pass, of twice the batch with
    /// guidance).</summary>
    public long TotalSteps => (long)Timesteps.Count * Batches;
}

/// <summary>
/// A rough upper estimate of a generation's memory, in bytes: the weights, one batch's working set on the device (the
/// forward pass's activations as <c>Training.MemoryEstimate</c> counts them for training, an upper bound under no_grad,
/// and the noise blocks), and the finished images kept on the CPU.
/// </summary>
public sealed record GenerationMemory(long WeightBytes, long ActivationBytesPerBatch, long NoiseBytesPerBatch, long OutputBytes)
{
    /// <summary>Weights plus one batch's activations and noise: what the device must hold at once.</summary>
    public long DeviceBytes => WeightBytes + ActivationBytesPerBatch + NoiseBytesPerBatch;
}
