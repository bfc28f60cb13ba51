namespace Ddpm.Training;

/// <summary>A checkpoint that is missing, truncated, corrupt or does not fit: <see cref="Path"/> names the
/// file.</summary>
public sealed class CheckpointException(string path, string problem, Exception? inner = null)
    : Exception($"checkpoint '{path}': {problem}", inner)
{
    public string Path { get; } = path;
}
