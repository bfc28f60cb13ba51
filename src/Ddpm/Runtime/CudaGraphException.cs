namespace Ddpm.Runtime;

/// <summary>A CUDA-graph operation failed (the message comes from libtorch through the shim), or graphs are
/// unavailable.</summary>
public sealed class CudaGraphException(string message, Exception? inner = null) : Exception(message, inner);
