namespace Ddpm.Onnx;

/// <summary>
/// One finished step of one batch, for progress and live frames. The spans are the generator's buffers: valid only
/// until the callback returns (copy what you keep).
/// </summary>
public sealed class GenerationStep
{
    private readonly float[] _before, _eps, _after;
    private readonly float _x0FromX, _x0FromEps;
    private readonly bool _clip;

    internal GenerationStep(int batch, int batches, long batchFirstIndex, int batchCount, int index, int steps, int timestep,
        float[] before, float[] eps, float[] after, float x0FromX, float x0FromEps, bool clip)
    {
        (Batch, Batches, BatchFirstIndex, BatchCount, Index, Steps, Timestep) = (batch, batches, batchFirstIndex, batchCount, index, steps, timestep);
        (_before, _eps, _after, _x0FromX, _x0FromEps, _clip) = (before, eps, after, x0FromX, x0FromEps, clip);
    }

    public int Batch { get; }
    public int Batches { get; }
    public long BatchFirstIndex { get; }
    public int BatchCount { get; }
    /// <summary>Step within the batch, 0 … <see cref="Steps"/> − 1.</summary>
    public int Index { get; }
    public int Steps { get; }
    /// <summary>The model timestep of this step.</summary>
    public int Timestep { get; }
    /// <summary>x after the step, [B·C·H·W].</summary>
    public ReadOnlySpan<float> X => _after;
    /// <summary>The ε this step used (the guided one with guidance), [B·C·H·W].</summary>
    public ReadOnlySpan<float> Eps => _eps;

    /// <summary>x̂_0 = (x_t − √(1 − ᾱ_t) ε)/√ᾱ_t of this step (clipped to [−1, 1] when the sampler clips), computed on
    /// call.</summary>
    public float[] PredictedX0()
    {
        var x0 = new float[_before.Length];
        for (int i = 0; i < x0.Length; i++)
        {
            float v = _x0FromX * _before[i] - _x0FromEps * _eps[i];
            x0[i] = _clip ? Math.Clamp(v, -1f, 1f) : v;
        }
        return x0;
    }
}
