using System.Diagnostics;
using Ddpm.Diffusion;
using Ddpm.Imaging;
using Ddpm.Interop;
using Ddpm.Sampling;
using Ddpm.Training;
using Microsoft.Extensions.Logging;
using TorchSharp;
using static TorchSharp.torch;

namespace Ddpm.Server;

/// <summary>One streamed picture of the reverse process: x_t after a step and the x_0 predicted at that step, as PNG grids.</summary>
public sealed record GenerationFrame(int Step, int Steps, int Timestep, byte[] XtPng, byte[] X0Png);

/// <summary>The final grid and what it cost.</summary>
public sealed record GenerationResult(byte[] GridPng, int Steps, IReadOnlyList<int> Timesteps, double Seconds);

public enum GenerationOutcome { Completed, Cancelled, Failed }

/// <summary>What one generation did, for the log (and the tests): steps run, and the step at which a cancellation arrived.</summary>
public sealed record GenerationRecord(string CheckpointId, GenerationOutcome Outcome, int StepsRun, int StepsTotal, int? StepsAtCancel, double Seconds);

/// <summary>
/// Every generation the server runs goes through here (the one seam to the library's sampling): one at a time per
/// checkpoint (<see cref="TryBegin"/> refuses a second with a retry estimate), loaded models cached per checkpoint,
/// frames at most every <c>frameInterval</c>, and cancellation checked after every step. The sampling mirrors
/// <c>ddpm sample</c> (same loading, EMA choice, seeded x_T and step noise), so a seed gives the CLI's images.
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
    /// Runs <paramref name="request"/> under <paramref name="lease"/> on the calling thread (blocking), reporting frames to
    /// <paramref name="onFrame"/>. Throws <see cref="OperationCanceledException"/> within one step of <paramref name="cancel"/>.
    /// </summary>
    public GenerationResult Run(GenerationLease lease, GenerationRequest request, Action<GenerationFrame>? onFrame, CancellationToken cancel)
    {
        if (lease.Checkpoint.Id != request.Checkpoint.Id) throw new ArgumentException("the lease is for another checkpoint", nameof(lease));
        var clock = Stopwatch.StartNew();
        int? stepsAtCancel = null;
        using var registration = cancel.Register(() => stepsAtCancel ??= lease.Done);
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
            outcome = GenerationOutcome.Cancelled;
            throw;
        }
        finally
        {
            Finished?.Invoke(new GenerationRecord(request.Checkpoint.Id, outcome, lease.Done, lease.Total, stepsAtCancel, clock.Elapsed.TotalSeconds));
        }
    }

    private GenerationResult Sample(GenerationLease lease, GenerationRequest request, Action<GenerationFrame>? onFrame, CancellationToken cancel, Stopwatch clock)
    {
        cancel.ThrowIfCancellationRequested();
        using var guard = TorchCallGuard.Enter();
        var model = Model(lease.Slot, request);
        cancel.ThrowIfCancellationRequested();
        using var scope = NewDisposeScope();
        var diffusion = model.Diffusion;
        var sampler = request.Sampler.Create(diffusion.Schedule);
        var unet = model.Loaded.Model;
        var config = model.Loaded.Config;
        int n = request.Count;
        NoisePredictor predictor = request.Label is { } y
            ? ClassifierFreeGuidance.Guided(unet, full(n, (long)y, dtype: int64, device: device), request.Guidance, diffusion.EpsFromOutput)
            : diffusion.AsEpsPredictor((x, t) => unet.forward(x, t));
        // The step's input and ε, kept for the frame's predicted x_0 (both live until the loop's step scope ends).
        Tensor? stepX = null, stepT = null, stepEps = null;
        NoisePredictor observed = (x, t) =>
        {
            var eps = predictor(x, t);
            (stepX, stepT, stepEps) = (x, t, eps);
            return eps;
        };
        using var generator = new Generator((ulong)request.Seed, new Device("cpu"));
        var shape = new long[] { n, config.Model.ImChannels, config.Model.ImSize, config.Model.ImSize };
        var xT = randn(shape, dtype: float32, generator: generator).to(device);
        if (device.type == DeviceType.CUDA) cuda.manual_seed(request.Seed);
        var timesteps = sampler.Timesteps;
        lease.Start(timesteps.Count);
        var lastFrame = TimeSpan.MinValue;
        var images = SamplingLoop.Run(sampler, observed, xT, device.type == DeviceType.CPU ? generator : null, (i, t, x) =>
        {
            lease.Done = i + 1;
            if (onFrame is not null && (i == 0 || clock.Elapsed - lastFrame >= frameInterval) && i + 1 < timesteps.Count)
            {
                lastFrame = clock.Elapsed;
                var x0 = diffusion.PredictX0FromEps(stepX!, stepT!, stepEps!);
                onFrame(new GenerationFrame(i + 1, timesteps.Count, t, ImageGrid.ToPng(x, request.Rows), ImageGrid.ToPng(x0, request.Rows)));
            }
            cancel.ThrowIfCancellationRequested();
            TorchCallGuard.Boundary();
        });
        var png = ImageGrid.ToPng(images, request.Rows);
        return new GenerationResult(png, timesteps.Count, timesteps.ToArray(), clock.Elapsed.TotalSeconds);
    }

    /// <summary>The slot's model for this request, loaded (or reloaded when the file changed) while the caller holds the slot.</summary>
    private CachedModel Model(Slot slot, GenerationRequest request)
    {
        var file = new FileInfo(request.Checkpoint.FullPath);
        var key = (file.Length, file.LastWriteTimeUtc, request.UseEma);
        if (slot.Model is not { } cached || cached.Key != key)
        {
            slot.Model?.Dispose();
            slot.Model = null;
            var loaded = ModelFile.Load(request.Checkpoint.FullPath);
            try
            {
                if (request.UseEma) Checkpoint.LoadEmaInto(request.Checkpoint.FullPath, loaded.Model);
                loaded.Model.to(device).eval();
            }
            catch
            {
                loaded.Dispose();
                throw;
            }
            slot.Model = new CachedModel(loaded, GaussianDiffusion.FromOptions(loaded.Config.Diffusion), key);
        }
        slot.LastUse = Interlocked.Increment(ref _uses);
        EvictIdle(slot);
        return slot.Model;
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

    internal sealed record CachedModel(LoadedModel Loaded, GaussianDiffusion Diffusion, (long Length, DateTime Modified, bool Ema) Key) : IDisposable
    {
        public void Dispose() => Loaded.Dispose();
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
