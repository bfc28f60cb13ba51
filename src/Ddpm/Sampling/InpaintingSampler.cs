using Ddpm.Diffusion;
using static TorchSharp.torch;

namespace Ddpm.Sampling;

/// <summary>
/// A sampler that inpaints one batch (RePaint, Lugmayr et al. 2022, Algorithm 1): it runs the inner sampler's steps in
/// <see cref="RePaintSchedule"/>'s order and after each step puts the known region back at the step's noise level,
/// x = m ⊙ x_known,t + (1 − m) ⊙ x (RePaint §4.1, eqs. 8–10); a jump back from state i to state i − j draws
/// x ~ q(x_{i−j} | x_i) = N(√(ᾱ_{i−j}/ᾱ_i) x_i, (1 − ᾱ_{i−j}/ᾱ_i) I), the forward steps of DDPM eq. 2 over the j steps
/// composed into one draw (RePaint §4.2 takes them one at a time). Its <see cref="Timesteps"/> are the model calls in
/// order, so a timestep recurs when the run resamples.
/// </summary>
/// <remarks>
/// x_known,t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε. When the run is stochastic (the inner sampler draws noise, or the run
/// resamples) ε is a fresh draw after every step: a sample of q(x_t | x_0), as RePaint has it. A deterministic run
/// (DDIM η = 0, DPM-Solver++(2M), UniPC) keeps one ε per image, the x_T it started from: the known region then follows
/// α_t x_0 + σ_t ε, the probability-flow ODE's own path for a single known image, instead of jumping to independent
/// noise at every step, which an ODE solver has no noise of its own to absorb.
/// </remarks>
internal sealed class InpaintingSampler : ISampler
{
    private readonly ISampler _inner;
    private readonly IReadOnlyList<RePaintMove> _moves;
    private readonly double[] _alphaBar; // ᾱ at the inner grid's states 0 … S (state S: the clean end, 1)
    private readonly Tensor _known, _keep, _eps0;
    private readonly Func<int, Tensor>? _fresh;

    /// <param name="inner">The sampler (fresh for this batch).</param>
    /// <param name="schedule">Its noise schedule.</param>
    /// <param name="moves">The order of its steps (<see cref="RePaintSchedule.Moves"/>).</param>
    /// <param name="known">The batch's known images [B, C, H, W] on the device.</param>
    /// <param name="keep">The batch's masks as bool [B, 1, H, W] (true = keep).</param>
    /// <param name="xT">The batch's x_T: ε of the deterministic path.</param>
    /// <param name="fresh">
    /// Noise for a stochastic run (null: deterministic): draw 2k is the known region's ε after move k, draw 2k + 1 the
    /// jump's noise after move k.
    /// </param>
    public InpaintingSampler(ISampler inner, NoiseSchedule schedule, IReadOnlyList<RePaintMove> moves, Tensor known,
        Tensor keep, Tensor xT, Func<int, Tensor>? fresh)
    {
        _inner = inner;
        _moves = moves;
        var steps = inner.Timesteps;
        _alphaBar = new double[steps.Count + 1];
        for (int i = 0; i < steps.Count; i++) _alphaBar[i] = schedule.AlphasCumprod[steps[i]];
        _alphaBar[steps.Count] = 1.0;
        _known = known;
        _keep = keep;
        _eps0 = xT;
        _fresh = fresh;
        Timesteps = moves.Select(m => steps[m.Step]).ToArray();
    }

    public IReadOnlyList<int> Timesteps { get; }

    public bool UsesNoise(int index) => _inner.UsesNoise(_moves[index].Step);

    /// <summary>x_T with the known region put in at the first state's level (the model's first input already agrees
    /// with it).</summary>
    public Tensor Start(Tensor xT) => Merge(xT, 0, _eps0);

    public Tensor Step(Tensor eps, int index, Tensor x, Tensor? noise)
    {
        using var scope = NewDisposeScope();
        var move = _moves[index];
        var next = _inner.Step(eps, move.Step, x, noise);
        int state = move.Step + 1;
        next = Merge(next, state, _fresh?.Invoke(2 * index) ?? _eps0);
        if (move.JumpTo is { } to)
        {
            // q(x_to | x_state): forward over the steps between, ᾱ_to/ᾱ_state = the product of their (1 − β).
            double ratio = _alphaBar[to] / _alphaBar[state];
            var z = _fresh?.Invoke(2 * index + 1)
                ?? throw new InvalidOperationException("resampling needs noise for its jumps");
            next = Math.Sqrt(ratio) * next + Math.Sqrt(1 - ratio) * z;
        }
        return next.MoveToOuterDisposeScope();
    }

    /// <summary>m ⊙ (√ᾱ x_0 + √(1 − ᾱ) ε) + (1 − m) ⊙ x at state <paramref name="state"/>: exactly x_0 at the clean
    /// end.</summary>
    private Tensor Merge(Tensor x, int state, Tensor eps)
    {
        using var scope = NewDisposeScope();
        double a = _alphaBar[state];
        var known = a == 1.0 ? _known : Math.Sqrt(a) * _known + Math.Sqrt(1 - a) * eps;
        return where(_keep, known, x).MoveToOuterDisposeScope();
    }
}
