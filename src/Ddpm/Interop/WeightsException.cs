namespace Ddpm.Interop;

/// <summary>
/// A weight file that cannot be used: unreadable, unsafe (a pickle referencing anything but tensors and plain
/// containers), or a state_dict that does not fit the model. Key problems are listed in full, never only the first.
/// </summary>
public sealed class WeightsException : Exception
{
    public WeightsException(string path, string problem, Exception? inner = null)
        : base($"weights '{path}': {problem}", inner) => Path = path;

    internal WeightsException(string path, IReadOnlyList<string> missing, IReadOnlyList<string> unexpected,
        IReadOnlyList<string> mismatched)
        : base($"weights '{path}': {Describe(missing, unexpected, mismatched)}")
    {
        Path = path;
        MissingKeys = missing;
        UnexpectedKeys = unexpected;
        MismatchedKeys = mismatched;
    }

    /// <summary>The file at fault.</summary>
    public string Path { get; }

    /// <summary>Keys the model has and the file lacks.</summary>
    public IReadOnlyList<string> MissingKeys { get; } = [];

    /// <summary>Keys the file has and the model lacks.</summary>
    public IReadOnlyList<string> UnexpectedKeys { get; } = [];

    /// <summary>Keys present on both sides with a different shape or a non-floating dtype, each with both
    /// shapes.</summary>
    public IReadOnlyList<string> MismatchedKeys { get; } = [];

    private static string Describe(IReadOnlyList<string> missing, IReadOnlyList<string> unexpected, IReadOnlyList<string> mismatched)
    {
        var parts = new List<string>();
        if (missing.Count > 0) parts.Add($"{missing.Count} missing key(s): {string.Join(", ", missing)}");
        if (unexpected.Count > 0) parts.Add($"{unexpected.Count} unexpected key(s): {string.Join(", ", unexpected)}");
        if (mismatched.Count > 0) parts.Add($"{mismatched.Count} mismatched key(s): {string.Join(", ", mismatched)}");
        return "the state_dict does not fit the model (nothing was loaded); " + string.Join("; ", parts);
    }
}
