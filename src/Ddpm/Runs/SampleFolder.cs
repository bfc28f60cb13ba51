namespace Ddpm.Runs;

/// <summary>
/// The files <c>ddpm sample</c> (and <c>ddpm eval</c>'s grid) write into an output folder, by name: the final grid, the
/// reverse process as an animated PNG, and the intermediate grids <c>x_NNNN.png</c> (NNNN the timestep).
/// </summary>
public static class SampleFolder
{
    public const string GridFile = "samples.png";
    public const string AnimationFile = "reverse.png";
    private const string IntermediatePrefix = "x_", PngExtension = ".png";

    /// <summary>The intermediate grid after the step at <paramref name="timestep"/>.</summary>
    public static string IntermediateFile(int timestep) => $"{IntermediatePrefix}{timestep:D4}{PngExtension}";

    /// <summary>Whether <paramref name="name"/> is one of the files a sample run writes.</summary>
    public static bool IsSampleOutput(string name) =>
        name is GridFile or AnimationFile
        || name.Length == IntermediateFile(0).Length && name.StartsWith(IntermediatePrefix, StringComparison.Ordinal)
           && name.EndsWith(PngExtension, StringComparison.Ordinal) && name[2..6].All(char.IsAsciiDigit);

    /// <summary>
    /// Removes what an earlier sample run left in <paramref name="folder"/>, so the folder never mixes two runs (this run's
    /// intermediate grids beside an older final grid); returns the names removed, in order.
    /// </summary>
    public static IReadOnlyList<string> RemoveEarlierOutputs(string folder)
    {
        var earlier = Directory.EnumerateFiles(folder).Where(f => IsSampleOutput(Path.GetFileName(f))).Order(StringComparer.Ordinal).ToList();
        foreach (var f in earlier) File.Delete(f);
        return earlier.Select(f => Path.GetFileName(f)).ToList();
    }
}
