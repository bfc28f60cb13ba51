namespace Ddpm.Distributed;

/// <summary>A launch, MPI/NCCL or cross-rank consistency failure, with a message naming what and where.</summary>
public sealed class DistributedException(string message, Exception? inner = null) : Exception(message, inner);
