using Ddpm.Diffusion;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// One finished reverse step of one batch, for progress bars, intermediate grids, animation frames or a live view.
/// The tensors are on the generator's device and live only until the callback returns (copy what you keep).
/// </summary>
public sealed class GenerationStep
{
    private readonly GaussianDiffusion _diffusion;
    private readonly SamplingStep _step;
    private readonly bool _clipX0;
    private Tensor? _predX0;

    internal GenerationStep(GaussianDiffusion diffusion, SamplingStep step, bool clipX0, GenerationBatch batch, int steps)
    {
        (_diffusion, _step, _clipX0, Steps) = (diffusion, step, clipX0, steps);
        (Batch, Batches, BatchFirstIndex, BatchCount) = batch;
    }

    /// <summary>Which batch (0-based) of <see cref="Batches"/>.</summary>
    public int Batch { get; }
    public int Batches { get; }
    /// <summary>Image index (in the seed's sequence) of the batch's first image.</summary>
    public long BatchFirstIndex { get; }
    public int BatchCount { get; }
    /// <summary>Step index within the batch, 0 … <see cref="Steps"/> − 1.</summary>
    public int Index => _step.Index;
    public int Steps { get; }
    /// <summary>The model timestep of this step (e.g. 999 … 0).</summary>
    public int Timestep => _step.Timestep;
    /// <summary>Steps done over the whole request, 1 … <see cref="Total"/>.</summary>
    public long Done => (long)Batch * Steps + Index + 1;
    public long Total => (long)Batches * Steps;
    /// <summary>x after the step, [B, C, H, W].</summary>
    public Tensor X => _step.Next;

    /// <summary>
    /// The x̂_0 this step's ε implies, x̂_0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t (DDPM eq. 4 solved for x_0), clipped to [−1, 1]
    /// when the sampler clips; computed on first use.
    /// </summary>
    public Tensor PredictedX0
    {
        get
        {
            if (_predX0 is null)
            {
                var t = full(_step.X.shape[0], (long)_step.Timestep, dtype: int64, device: _step.X.device);
                var x0 = _diffusion.PredictX0FromEps(_step.X, t, _step.Eps);
                _predX0 = _clipX0 ? x0.clamp(-1.0, 1.0) : x0;
            }
            return _predX0;
        }
    }
}

/// <summary>Where a batch lies in its request: its number of all, and its image range.</summary>
internal readonly record struct GenerationBatch(int Index, int Count, long FirstIndex, int Images);
