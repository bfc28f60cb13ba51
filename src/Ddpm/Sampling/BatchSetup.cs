using Ddpm.Diffusion;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// What <see cref="ImageGenerator.Generate"/> runs for one batch of a request, whatever its kind: the sampler, the
/// start x (consumed by the loop), the step noise and the noise predictor. Everything random comes from streams of
/// (seed, image index) (<see cref="ImageNoise"/>), so image i depends only on (seed, i, inputs). Tensors belong to the
/// caller's dispose scope; the streams are disposed with this.
/// </summary>
internal sealed class BatchSetup : IDisposable
{
    /// <summary>
    /// Second stream family of an inpainting run (the known region's ε and the jumps' noise): the request's seed mixed
    /// with this constant (the fractional part of √2), so the main streams stay those of sampling.
    /// </summary>
    public const long InpaintingStreamMix = 0x6A09_E667_F3BC_C909;

    private readonly List<IDisposable> _owned = [];

    private BatchSetup()
    {
    }

    public ISampler Sampler { get; private set; } = null!;
    public Tensor Start { get; private set; } = null!;
    public Func<int, Tensor> Noise { get; private set; } = null!;
    public NoisePredictor Predictor { get; private set; } = null!;

    /// <param name="request">The request (checked by Plan).</param>
    /// <param name="diffusion">The model's diffusion process (q(x_t | x_0)).</param>
    /// <param name="imageShape">[C, H, W].</param>
    /// <param name="device">Where the batch runs.</param>
    /// <param name="start">Offset of the batch in the request.</param>
    /// <param name="n">Images in the batch.</param>
    /// <param name="predictor">ε_θ for images [start, start + n) (labels, guidance, class mixing).</param>
    public static BatchSetup Create(GenerationRequest request, GaussianDiffusion diffusion, long[] imageShape,
        Device device, int start, int n, NoisePredictor predictor)
    {
        var setup = new BatchSetup { Predictor = predictor };
        try
        {
            setup.Fill(request, diffusion, imageShape, device, request.FirstIndex + start, n);
            return setup;
        }
        catch
        {
            setup.Dispose();
            throw;
        }
    }

    private void Fill(GenerationRequest request, GaussianDiffusion diffusion, long[] imageShape, Device device,
        long first, int n)
    {
        var schedule = diffusion.Schedule;
        if (request.Interpolation is { } path)
        {
            // The two ends' streams, each drawn once and broadcast over the batch's frames.
            var from = Own(new ImageNoise(request.Seed, path.FromIndex, 1, imageShape, device));
            var to = Own(new ImageNoise(path.ToSeed, path.ToIndex, 1, imageShape, device));
            var fractions = Enumerable.Range(0, n).Select(j => path.Fraction(first + j)).ToArray();
            Sampler = request.Sampler.Create(schedule);
            Start = Slerp.Interpolate(from.Initial(), to.Initial(), fractions);
            Noise = step => Slerp.Interpolate(from.ForStep(step), to.ForStep(step), fractions);
            return;
        }

        var noise = Own(new ImageNoise(request.Seed, first, n, imageShape, device));
        var xT = noise.Initial();
        Noise = noise.ForStep;
        if (request.ImageToImage is { } edit)
        {
            var grid = request.Sampler.Create(schedule).Timesteps;
            int k = ImageToImage.StartIndex(edit.Strength, grid, schedule.T);
            Sampler = request.Sampler.Create(schedule, k);
            if (k == 0)
            {
                Start = xT; // the grid's first step: the chain's prior N(0, I), as sampling starts
                return;
            }
            var x0 = Inputs(edit.Images, first, n, device);
            var t = full(n, (long)Sampler.Timesteps[0], dtype: int64, device: device);
            Start = diffusion.QSample(x0, t, xT); // x_{t0} ~ q(x_{t0} | x_0), DDPM eq. 4
            return;
        }
        if (request.Inpainting is { } fill)
        {
            var inner = request.Sampler.Create(schedule);
            var moves = RePaintSchedule.Moves(inner.Timesteps.Count, fill.JumpLength, fill.Resamplings);
            bool stochastic = fill.Resamplings > 1 || Enumerable.Range(0, inner.Timesteps.Count).Any(inner.UsesNoise);
            Func<int, Tensor>? fresh = null;
            if (stochastic)
            {
                var extra = Own(new ImageNoise(request.Seed ^ InpaintingStreamMix, first, n, imageShape, device));
                extra.Initial().Dispose(); // each stream's first draw is its x_T: unused here
                fresh = extra.ForStep;
            }
            var known = Inputs(fill.Known, first, n, device);
            var keep = Inputs(fill.Mask, first, n, device).gt(0.5);
            var sampler = new InpaintingSampler(inner, schedule, moves, known, keep, xT, fresh);
            Sampler = sampler;
            Start = sampler.Start(xT);
            return;
        }
        Sampler = request.Sampler.Create(schedule);
        Start = xT;
    }

    /// <summary>Input (first + j) mod M for each image j of the batch, on the device.</summary>
    private static Tensor Inputs(Tensor inputs, long first, int n, Device device)
    {
        long m = inputs.shape[0];
        var indices = Enumerable.Range(0, n).Select(j => (first + j) % m).ToArray();
        var index = tensor(indices, dtype: int64, device: inputs.device);
        return inputs.index_select(0, index).to(float32).to(device);
    }

    private T Own<T>(T item) where T : IDisposable
    {
        _owned.Add(item);
        return item;
    }

    public void Dispose()
    {
        foreach (var item in _owned) item.Dispose();
        _owned.Clear();
    }
}
