using System.Diagnostics;
using Ddpm.Configuration;
using Ddpm.Imaging;
using Ddpm.Sampling;
using Microsoft.Extensions.Logging;
using static TorchSharp.torch;

namespace Ddpm.Server;

/// <summary>One streamed picture of the reverse process: x_t after a step and the x_0 predicted at that step, as PNG
/// grids.</summary>
public sealed record GenerationFrame(int Step, int Steps, int Timestep, byte[] XtPng, byte[] X0Png);

/// <summary>The final grid and what it cost.</summary>
public sealed record GeneratedGrid(byte[] GridPng, int Steps, IReadOnlyList<int> Timesteps, double Seconds);

public enum GenerationOutcome { Completed, Cancelled, Failed }

/// <summary>What one generation did, for the log (and the tests): steps run, and the step at which a cancellation
/// arrived.</summary>
public sealed record GenerationRecord(string CheckpointId, GenerationOutcome Outcome, int StepsRun, int StepsTotal, int? StepsAtCancel, double Seconds);

/// <summary>
/// Every generation the server runs goes through here (the one seam to the library): one at a time per checkpoint
/// (<see cref="TryBegin"/> refuses a second with a retry estimate), an <see cref="ImageGenerator"/> cached per
/// checkpoint, frames (x_t and x̂_0 of the library's step callback) at most every <c>frameInterval</c>, cancellation
/// before every step. <c>ddpm sample</c> runs the same <see cref="ImageGenerator.Generate"/>, so a seed gives the CLI's
/// images.
/// </summary>
public sealed class GenerationService(Device device, GenerationLimits limits, TimeSpan frameInterval, ILogger<GenerationService>? logger = null)
    : IDisposable
{
    private readonly Dictionary<string, Slot> _slots = new();
    private readonly Lock _lock = new();
    private long _uses;

    /// <summary>Called after every generation, whatever its outcome.</summary>
    public event Action<GenerationRecord>? Finished;

    /// <summary>
    /// The right to generate from <paramref name="checkpoint"/> now, or null with an estimate of when the running
    /// generation ends (for a Retry-After header).
    /// </summary>
    public GenerationLease? TryBegin(CheckpointInfo checkpoint, out TimeSpan retryAfter)
    {
        Slot slot;
        lock (_lock)
        {
            if (!_slots.TryGetValue(checkpoint.Id, out slot!)) _slots[checkpoint.Id] = slot = new Slot();
        }
        if (!slot.Gate.Wait(0))
        {
            retryAfter = slot.Current?.Remaining() ?? TimeSpan.FromSeconds(1);
            return null;
        }
        retryAfter = TimeSpan.Zero;
        return slot.Current = new GenerationLease(slot, checkpoint);
    }

    /// <summary>
    /// Runs <paramref name="request"/> under <paramref name="lease"/> on the calling thread (blocking), reporting
    /// frames to <paramref name="onFrame"/>. Throws <see cref="OperationCanceledException"/> within one step of
    /// <paramref name="cancel"/>. The lease is released when the sampling stops, before <see cref="Finished"/> is
    /// raised.
    /// </summary>
    public GeneratedGrid Run(GenerationLease lease, ServeRequest request, Action<GenerationFrame>? onFrame, CancellationToken cancel)
    {
        if (lease.Checkpoint.Id != request.Checkpoint.Id) throw new ArgumentException("the lease is for another checkpoint", nameof(lease));
        var clock = Stopwatch.StartNew();
        // The steps done when the cancellation came: set by the token's callback, or where the sampling saw it first
        // (the callback runs on the cancelling thread and may not have run yet when the sampling throws).
        int stepsAtCancel = -1;
        using var registration = cancel.Register(() => Interlocked.CompareExchange(ref stepsAtCancel, lease.Done, -1));
        var outcome = GenerationOutcome.Failed;
        try
        {
            var result = Sample(lease, request, onFrame, cancel, clock);
            outcome = GenerationOutcome.Completed;
            logger?.LogInformation("generated {Count} images in {Steps} steps in {Seconds:F2} s from {Run}/{Checkpoint}",
                request.Count, request.Steps, clock.Elapsed.TotalSeconds, request.Checkpoint.RunName, request.Checkpoint.Name);
            return result;
        }
        catch (OperationCanceledException)
        {
            Interlocked.CompareExchange(ref stepsAtCancel, lease.Done, -1);
            outcome = GenerationOutcome.Cancelled;
            throw;
        }
        finally
        {
            // The sampling has stopped: free the checkpoint first, so whoever hears Finished can generate from it at
            // once.
            int atCancel = Volatile.Read(ref stepsAtCancel);
            var record = new GenerationRecord(request.Checkpoint.Id, outcome, lease.Done, lease.Total, atCancel < 0 ? null : atCancel, clock.Elapsed.TotalSeconds);
            lease.Dispose();
            Finished?.Invoke(record);
        }
    }

    private GeneratedGrid Sample(GenerationLease lease, ServeRequest request, Action<GenerationFrame>? onFrame, CancellationToken cancel, Stopwatch clock)
    {
        cancel.ThrowIfCancellationRequested();
        var generator = Generator(lease.Slot, request);
        cancel.ThrowIfCancellationRequested();
        var library = request.ToGenerationRequest();
        var plan = generator.Plan(library);
        lease.Start((int)plan.TotalSteps);
        var lastFrame = TimeSpan.MinValue;
        using var result = generator.Generate(library, s =>
        {
            lease.Done = (int)s.Done;
            if (onFrame is not null && (s.Done == 1 || clock.Elapsed - lastFrame >= frameInterval) && s.Done < s.Total)
            {
                lastFrame = clock.Elapsed;
                onFrame(new GenerationFrame((int)s.Done, (int)s.Total, s.Timestep, ImageGrid.ToPng(s.X, request.Rows), ImageGrid.ToPng(s.PredictedX0, request.Rows)));
            }
        }, cancel);
        var png = ImageGrid.ToPng(result.Images, request.Rows);
        return new GeneratedGrid(png, plan.Timesteps.Count, result.Timesteps, result.Timings.TotalSeconds);
    }

    /// <summary>
    /// The library's plan of <paramref name="request"/> under <paramref name="lease"/> (loading the model when needed):
    /// its checks of the request and its inputs are the server's, so a bad edit is refused before any event is sent.
    /// </summary>
    /// <exception cref="ArgumentException">The library refuses the request (the message names the setting).</exception>
    public GenerationPlan Plan(GenerationLease lease, ServeRequest request)
    {
        if (lease.Checkpoint.Id != request.Checkpoint.Id)
            throw new ArgumentException("the lease is for another checkpoint", nameof(lease));
        var generator = Generator(lease.Slot, request); // loaded outside the scope below: the model stays cached
        using var scope = NewDisposeScope();
        return generator.Plan(request.ToGenerationRequest());
    }

    /// <summary>The slot's generator for this request, loaded (or reloaded when the file changed) while the caller
    /// holds the slot.</summary>
    private ImageGenerator Generator(Slot slot, ServeRequest request)
    {
        var file = new FileInfo(request.Checkpoint.FullPath);
        var key = (file.Length, file.LastWriteTimeUtc, request.UseEma);
        if (slot.Model is not { } cached || cached.Key != key)
        {
            slot.Model?.Dispose();
            slot.Model = null;
            slot.Model = new CachedModel(ImageGenerator.Load(request.Checkpoint.FullPath, device, Precision.Fp32, request.UseEma), key);
        }
        slot.LastUse = Interlocked.Increment(ref _uses);
        EvictIdle(slot);
        return slot.Model.Generator;
    }

    /// <summary>Drops the least recently used idle models beyond <see cref="GenerationLimits.CachedModels"/>.</summary>
    private void EvictIdle(Slot keep)
    {
        List<Slot> loaded;
        lock (_lock) loaded = _slots.Values.Where(s => s != keep && s.Model is not null).OrderBy(s => s.LastUse).ToList();
        int excess = loaded.Count + 1 - Math.Max(1, limits.CachedModels);
        foreach (var slot in loaded)
        {
            if (excess <= 0) break;
            if (!slot.Gate.Wait(0)) continue; // in use: keep it
            try
            {
                slot.Model?.Dispose();
                slot.Model = null;
                excess--;
            }
            finally { slot.Gate.Release(); }
        }
    }

    public void Dispose()
    {
        List<Slot> slots;
        lock (_lock) slots = _slots.Values.ToList();
        foreach (var slot in slots)
        {
            // A generation still running holds its slot; it stops at the next step once the host cancels its request.
            if (!slot.Gate.Wait(TimeSpan.FromSeconds(30))) continue;
            slot.Model?.Dispose();
            slot.Model = null;
        }
    }

    internal sealed class Slot
    {
        public readonly SemaphoreSlim Gate = new(1, 1);
        public CachedModel? Model;
        public GenerationLease? Current;
        public long LastUse;
    }

    internal sealed record CachedModel(ImageGenerator Generator, (long Length, DateTime Modified, bool Ema) Key) : IDisposable
    {
        public void Dispose() => Generator.Dispose();
    }
}

/// <summary>The right to run one generation on a checkpoint; disposing it lets the next request in.</summary>
public sealed class GenerationLease : IDisposable
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private int _released;

    internal GenerationLease(GenerationService.Slot slot, CheckpointInfo checkpoint) => (Slot, Checkpoint) = (slot, checkpoint);

    internal GenerationService.Slot Slot { get; }
    public CheckpointInfo Checkpoint { get; }
    /// <summary>Steps finished so far, of <see cref="Total"/>.</summary>
    public int Done { get; internal set; }
    public int Total { get; private set; }

    internal void Start(int total)
    {
        Total = total;
        _clock.Restart();
    }

    /// <summary>The time left, extrapolated from the steps so far (at least one second).</summary>
    public TimeSpan Remaining()
    {
        int done = Done, total = Total;
        if (done == 0 || total == 0) return TimeSpan.FromSeconds(1);
        var left = _clock.Elapsed.TotalSeconds / done * (total - done);
        return TimeSpan.FromSeconds(Math.Max(1, Math.Ceiling(left)));
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _released, 1) != 0) return;
        if (Slot.Current == this) Slot.Current = null;
        Slot.Gate.Release();
    }
}
