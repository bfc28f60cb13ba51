namespace Ddpm.Data;

/// <summary>Unusable input data: <see cref="Path"/> names the file or folder, the message says what is wrong.</summary>
public sealed class DataException(string path, string problem) : Exception($"{path}: {problem}")
{
    public string Path { get; } = path;
    public string Problem { get; } = problem;
}
