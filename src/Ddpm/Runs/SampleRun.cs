using System.Globalization;
using Ddpm.Configuration;
using Ddpm.Distributed;
using Ddpm.Sampling;

namespace Ddpm.Runs;

/// <summary>
/// One generation written to a <see cref="SampleFolder"/> (<c>ddpm sample</c> and the editing commands): planned and
/// checked before any work, split over the ranks of a job by image index when there is one
/// (<see cref="ShardedGeneration"/>), with rank 0 alone preparing (claiming) the folder, observing the steps and
/// writing the grid and the animation. The folder is given up when <see cref="Run"/> ends, or on <see cref="Dispose"/>.
/// </summary>
public sealed class SampleRun : IDisposable
{
    private readonly ICommunicator? _ranks;

    /// <param name="ranks">The job's ranks (each makes its range of image indices), or null for one process.</param>
    /// <exception cref="ArgumentException">The request does not fit the model (as
    /// <see cref="ImageGenerator.Plan"/>).</exception>
    /// <exception cref="InsufficientMemoryException">The request cannot fit in memory.</exception>
    public SampleRun(ImageGenerator generator, GenerationRequest request, string folder, int perRow, int frames = 0, int saveEvery = 0,
        ICommunicator? ranks = null)
    {
        (Generator, Request, _ranks) = (generator, request, ranks is { Size: > 1 } ? ranks : null);
        Plan = generator.Plan(request);
        Folder = new SampleFolder(folder, perRow, Plan.Timesteps.Count, frames, saveEvery);
    }

    private long _done; // steps rank 0 has seen

    public ImageGenerator Generator { get; }
    public GenerationRequest Request { get; }
    public GenerationPlan Plan { get; }
    public SampleFolder Folder { get; }
    /// <summary>Whether this process writes and reports (the only one, or rank 0).</summary>
    public bool IsRoot => _ranks is null || _ranks.Rank == 0;
    /// <summary>The ranks the images are split over (1 without a job).</summary>
    public int Processes => _ranks?.Size ?? 1;

    /// <summary>
    /// Creates and claims the folder and removes an earlier generation's files (rank 0 only); returns a note naming
    /// them, or null when there were none.
    /// </summary>
    /// <exception cref="RunLockedException">Another generation, still running, writes into the folder.</exception>
    public string? Prepare() => (IsRoot ? Folder.Prepare() : []) is { Count: > 0 } earlier
        ? $"removed {earlier.Count} file(s) of an earlier sample from '{Folder.Path}': {string.Join(", ", earlier.Take(5))}{(earlier.Count > 5 ? ", …" : "")}"
        : null;

    /// <summary>
    /// Generates (collective under a job) and, on rank 0, writes the grid and the animation. <paramref name="onStep"/>
    /// (rank 0) sees every step after the folder has. Throws <see cref="OperationCanceledException"/> within one step
    /// of <paramref name="cancel"/>, with only the intermediate grids written.
    /// </summary>
    public SampleRunResult Run(Action<GenerationStep>? onStep = null, CancellationToken cancel = default)
    {
        Action<GenerationStep>? observe = IsRoot ? s =>
        {
            Folder.Observe(s);
            _done = s.Done;
            onStep?.Invoke(s);
        } : null;
        try
        {
            using var result = _ranks is null
                ? Generator.Generate(Request, observe, cancel)
                : ShardedGeneration.Generate(Generator, Request, _ranks, observe, cancel);
            return new SampleRunResult(IsRoot ? Folder.Finish(result.Images, path: Request.Interpolation is not null) : null, result.Timings);
        }
        finally
        {
            Folder.Release();
        }
    }

    /// <summary>
    /// What <paramref name="result"/> did, in one line: "<paramref name="what"/> N images in S steps of the sampler,
    /// the time (<paramref name="elapsed"/> over several processes) and ms/step, from <paramref name="source"/> (epoch
    /// and step or format, EMA, bf16)".
    /// </summary>
    public string Summary(SampleRunResult result, TimeSpan elapsed, string what, string source)
    {
        var (t, g, several) = (result.Timings, Generator, Processes > 1);
        var origin = g.Source?.Manifest is { } m ? $"epoch {m.Epoch}, step {m.Step}" : g.Source is { } s ? $"{s.Format} weights" : "a model in memory";
        return string.Create(CultureInfo.InvariantCulture,
            $"{what} {Request.Count} images{(several ? $" over {Processes} processes" : "")} in {Plan.Timesteps.Count} steps " +
            $"of {g.Resolve(Request).Sampler.Describe(g.Diffusion.Schedule.T)}{(Plan.Batches > 1 ? $" × {Plan.Batches} batches" : "")}, " +
            $"{(several ? elapsed.TotalSeconds : t.TotalSeconds):F1} s ({t.MillisecondsPerStep:F1} ms/step{(several ? " on rank 0" : "")}) " +
            $"from {source} ({origin}, {(g.UsesEma ? "EMA weights" : "model weights")}{(g.Precision == Precision.Bf16 ? ", bf16" : "")})");
    }

    /// <summary>Why a cancelled run left no grid, and what its folder holds, in one line.</summary>
    public string Interrupted() =>
        $"sampling interrupted after step {_done} of {Plan.TotalSteps}: no {SampleFolder.GridFile} was written; {Folder.Holdings}";

    /// <summary>Gives the folder up, if <see cref="Prepare"/> claimed it and <see cref="Run"/> did not.</summary>
    public void Dispose() => Folder.Release();
}

/// <summary>What a <see cref="SampleRun"/> wrote: the grid's path (rank 0; null elsewhere) and this rank's
/// timings.</summary>
public sealed record SampleRunResult(string? GridPath, GenerationTimings Timings);
