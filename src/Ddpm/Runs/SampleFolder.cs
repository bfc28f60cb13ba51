using Ddpm.Imaging;
using Ddpm.IO;
using Ddpm.Sampling;
using static TorchSharp.torch;

namespace Ddpm.Runs;

/// <summary>
/// The output folder of one generation (<c>ddpm sample</c>, and the editing commands): the final grid, the reverse
/// process as an animated PNG, and intermediate grids <c>x_NNNN.png</c> (NNNN the timestep), each file name defined
/// here once. <see cref="Prepare"/> claims the folder (<see cref="LockFile"/>: a second generation into it is refused
/// while this one runs), <see cref="Observe"/> sees the generation's steps (frames and intermediate grids show the
/// first batch), <see cref="Finish"/> writes the grid and the animation, <see cref="Release"/> gives the folder up.
/// </summary>
public sealed class SampleFolder
{
    public const string GridFile = "samples.png";
    public const string AnimationFile = "reverse.png";
    /// <summary>An interpolation's frames as an animated PNG, there and back.</summary>
    public const string PathFile = "path.png";
    /// <summary>
    /// The lock of a generation writing into the folder (<see cref="RunLock"/>), there while it runs.
    /// </summary>
    public const string LockFile = "sample.lock";
    private const string IntermediatePrefix = "x_", PngExtension = ".png";

    private readonly int _perRow, _saveEvery, _frameEvery, _steps;
    private readonly List<byte[]> _frames = [];
    private RunLock? _lock;
    private bool _gridWritten, _animationWritten;

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
    /// Creates the folder, claims it (its lock) and removes what an earlier generation left in it, so it never mixes
    /// two runs (this run's intermediate grids beside an older final grid); returns the names removed, in order.
    /// </summary>
    /// <exception cref="RunLockedException">Another generation, still running, writes into the folder (its files are
    /// kept).</exception>
    public IReadOnlyList<string> Prepare()
    {
        Directory.CreateDirectory(Path);
        _lock ??= RunLock.Acquire(Path, LockFile, "sample");
        try
        {
            var earlier = Directory.EnumerateFiles(Path).Where(f => IsSampleOutput(System.IO.Path.GetFileName(f))).Order(StringComparer.Ordinal).ToList();
            foreach (var f in earlier) File.Delete(f);
            return earlier.Select(f => System.IO.Path.GetFileName(f)).ToList();
        }
        catch
        {
            Release();
            throw;
        }
    }

    /// <summary>Gives the folder up (deletes its lock); nothing else is touched.</summary>
    public void Release()
    {
        _lock?.Dispose();
        _lock = null;
    }

    /// <summary>
    /// What the folder holds of this generation, as a sentence ("'PATH' holds …") for a message after a stop.
    /// </summary>
    public string Holdings
    {
        get
        {
            var grids = IntermediateGrids > 0 ? $"{IntermediateGrids} intermediate grid(s) x_*.png" : null;
            if (!_gridWritten) return grids is null ? $"'{Path}' holds nothing of this run" : $"'{Path}' holds only this run's {grids}";
            var files = new[] { GridFile, _animationWritten ? AnimationFile : null, grids }.OfType<string>();
            return $"'{Path}' holds this run's {string.Join(", ", files)}";
        }
    }

    /// <summary>A step of the generation: an animation frame and an intermediate grid when due (first batch
    /// only).</summary>
    public void Observe(GenerationStep s)
    {
        if (s.Batch != 0) return;
        int done = s.Index + 1;
        if (_frameEvery > 0 && (done % _frameEvery == 0 || done == _steps || done == 1)) _frames.Add(ImageGrid.ToPng(s.X, _perRow));
        if (_saveEvery > 0 && done % _saveEvery == 0 && done != _steps)
        {
            var name = IntermediateFile(s.Timestep);
            Write(name, () => ImageGrid.SavePng(s.X, _perRow, System.IO.Path.Combine(Path, name)));
            IntermediateGrids++;
        }
    }

    /// <summary>
    /// Writes the final grid of <paramref name="images"/> and the animation (when it has frames); with
    /// <paramref name="path"/>, also the images in order, there and back, as <see cref="PathFile"/>. Returns the grid's
    /// path.
    /// </summary>
    /// <exception cref="IOException">A write failed (a full disk, say); the message says what the folder
    /// holds.</exception>
    public string Finish(Tensor images, bool path = false)
    {
        Write(GridFile, () => ImageGrid.SavePng(images, _perRow, GridPath));
        _gridWritten = true;
        if (_frames.Count > 0) Write(AnimationFile, () => AtomicFile.WriteAllBytes(System.IO.Path.Combine(Path, AnimationFile), AnimatedPng.Assemble(_frames)));
        _animationWritten = _frames.Count > 0;
        if (path)
        {
            int n = (int)images.shape[0];
            var order = Enumerable.Range(0, n).Concat(Enumerable.Range(1, Math.Max(0, n - 2)).Reverse()); // loops without a jump
            var frames = order.Select(k => ImageGrid.ToPng(images.narrow(0, k, 1), 1)).ToList();
            Write(PathFile, () => AtomicFile.WriteAllBytes(System.IO.Path.Combine(Path, PathFile), AnimatedPng.Assemble(frames, frameMilliseconds: 150)));
        }
        return GridPath;
    }

    /// <summary>
    /// One atomic write (nothing half-written is left); a failure names the file and says what the folder holds.
    /// </summary>
    private void Write(string name, Action write)
    {
        try { write(); }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new IOException($"writing {name} into '{Path}' failed ({e.Message}); {Holdings}", e);
        }
    }
}
