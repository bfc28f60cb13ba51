using Ddpm.Imaging;
using Ddpm.IO;
using Ddpm.Sampling;
using static TorchSharp.torch;

namespace Ddpm.Runs;

/// <summary>
/// The output folder of one generation (<c>ddpm sample</c>, and the editing commands): the final grid, the reverse process
/// as an animated PNG, and intermediate grids <c>x_NNNN.png</c> (NNNN the timestep), each file name defined here once.
/// <see cref="Observe"/> sees the generation's steps (frames and intermediate grids show the first batch);
/// <see cref="Finish"/> writes the grid and the animation.
/// </summary>
public sealed class SampleFolder
{
    public const string GridFile = "samples.png";
    public const string AnimationFile = "reverse.png";
    /// <summary>An interpolation's frames as an animated PNG, there and back.</summary>
    public const string PathFile = "path.png";
    private const string IntermediatePrefix = "x_", PngExtension = ".png";

    private readonly int _perRow, _saveEvery, _frameEvery, _steps;
    private readonly List<byte[]> _frames = [];

    /// <param name="path">The folder (created by <see cref="Prepare"/>).</param>
    /// <param name="perRow">Images per grid row.</param>
    /// <param name="steps">Steps per batch of the generation.</param>
    /// <param name="frames">Frames of the animation (0: none).</param>
    /// <param name="saveEvery">Also write the grid every this many steps (0: only the final grid).</param>
    public SampleFolder(string path, int perRow, int steps, int frames = 0, int saveEvery = 0)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(perRow, 1);
        (Path, _perRow, _steps, _saveEvery) = (path, perRow, steps, saveEvery);
        _frameEvery = frames > 0 ? Math.Max(1, steps / frames) : 0;
    }

    public string Path { get; }
    public string GridPath => System.IO.Path.Combine(Path, GridFile);
    /// <summary>Intermediate grids written so far.</summary>
    public int IntermediateGrids { get; private set; }

    /// <summary>The intermediate grid after the step at <paramref name="timestep"/>.</summary>
    public static string IntermediateFile(int timestep) => $"{IntermediatePrefix}{timestep:D4}{PngExtension}";

    /// <summary>Whether <paramref name="name"/> is one of the files a generation writes.</summary>
    public static bool IsSampleOutput(string name) =>
        name is GridFile or AnimationFile or PathFile
        || name.Length == IntermediateFile(0).Length && name.StartsWith(IntermediatePrefix, StringComparison.Ordinal)
           && name.EndsWith(PngExtension, StringComparison.Ordinal) && name[2..6].All(char.IsAsciiDigit);

    /// <summary>
    /// Creates the folder and removes what an earlier generation left in it, so it never mixes two runs (this run's
    /// intermediate grids beside an older final grid); returns the names removed, in order.
    /// </summary>
    public IReadOnlyList<string> Prepare()
    {
        Directory.CreateDirectory(Path);
        var earlier = Directory.EnumerateFiles(Path).Where(f => IsSampleOutput(System.IO.Path.GetFileName(f))).Order(StringComparer.Ordinal).ToList();
        foreach (var f in earlier) File.Delete(f);
        return earlier.Select(f => System.IO.Path.GetFileName(f)).ToList();
    }

    /// <summary>A step of the generation: an animation frame and an intermediate grid when due (first batch only).</summary>
    public void Observe(GenerationStep s)
    {
        if (s.Batch != 0) return;
        int done = s.Index + 1;
        if (_frameEvery > 0 && (done % _frameEvery == 0 || done == _steps || done == 1)) _frames.Add(ImageGrid.ToPng(s.X, _perRow));
        if (_saveEvery > 0 && done % _saveEvery == 0 && done != _steps)
        {
            ImageGrid.SavePng(s.X, _perRow, System.IO.Path.Combine(Path, IntermediateFile(s.Timestep)));
            IntermediateGrids++;
        }
    }

    /// <summary>
    /// Writes the final grid of <paramref name="images"/> and the animation (when it has frames); with
    /// <paramref name="path"/>, also the images in order, there and back, as <see cref="PathFile"/>. Returns the grid's path.
    /// </summary>
    public string Finish(Tensor images, bool path = false)
    {
        ImageGrid.SavePng(images, _perRow, GridPath);
        if (_frames.Count > 0) AtomicFile.WriteAllBytes(System.IO.Path.Combine(Path, AnimationFile), AnimatedPng.Assemble(_frames));
        if (path)
        {
            int n = (int)images.shape[0];
            var order = Enumerable.Range(0, n).Concat(Enumerable.Range(1, Math.Max(0, n - 2)).Reverse()); // loops without a jump
            var frames = order.Select(k => ImageGrid.ToPng(images.narrow(0, k, 1), 1)).ToList();
            AtomicFile.WriteAllBytes(System.IO.Path.Combine(Path, PathFile), AnimatedPng.Assemble(frames, frameMilliseconds: 150));
        }
        return GridPath;
    }
}
