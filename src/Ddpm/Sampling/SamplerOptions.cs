using System.Runtime.Serialization;
using Ddpm.Diffusion;

namespace Ddpm.Sampling;

/// <summary>The reverse-process families.</summary>
public enum SamplerKind
{
    /// <summary>Ancestral sampling, Algorithm 2 (respaced when <see cref="SamplerOptions.Steps"/> &lt; T).</summary>
    Ddpm,
    /// <summary>DDIM (Song et al. 2021).</summary>
    Ddim,
    /// <summary>DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2): second-order multistep, one model call per
    /// step.</summary>
    [EnumMember(Value = "dpmpp-2m")] DpmSolver2M,
    /// <summary>DPM-Solver++(2M) SDE: the stochastic second-order multistep variant (Lu et al. 2022).</summary>
    [EnumMember(Value = "dpmpp-2m-sde")] DpmSolver2MSde,
    /// <summary>UniPC with B(h) = e^{−h} − 1 ("bh2", Zhao et al. 2023): UniP-2 predictor and UniC corrector, order
    /// 3.</summary>
    [EnumMember(Value = "unipc")] UniPc,
}

/// <summary>How to sample: family, number of steps, DDIM's η, spacing, variance, clipping and thresholding.</summary>
public sealed record SamplerOptions
{
    public SamplerKind Kind { get; init; } = SamplerKind.Ddpm;
    /// <summary>Number of reverse steps S (null = the family's default, <see cref="DefaultSteps"/>).</summary>
    public int? Steps { get; init; }
    /// <summary>DDIM's η ∈ [0, 1] (0 = deterministic).</summary>
    public double Eta { get; init; }
    /// <summary>The timestep sub-sequence; null = the family's default (<see cref="DefaultSpacing"/>).</summary>
    public SpacingKind? Spacing { get; init; }
    public VarianceKind Variance { get; init; } = VarianceKind.BetaTilde;
    public bool ClipX0 { get; init; }
    /// <summary>Dynamic thresholding's percentile p ∈ (0, 1) for the DPM-Solver++ and UniPC samplers (Saharia et al.
    /// 2022), or null.</summary>
    public double? DynamicThreshold { get; init; }
    /// <summary>
    /// An explicit grid of model timesteps, noisiest first (e.g. a distilled checkpoint's,
    /// <see cref="ImageGenerator.Resolve"/>), instead of <see cref="Steps"/> and <see cref="Spacing"/>; DDIM only.
    /// Null: the grid comes from the steps and spacing.
    /// </summary>
    public IReadOnlyList<int>? Timesteps { get; init; }

    /// <summary>Steps a solver takes unless told otherwise: the few-step budget it was measured at
    /// (docs/measurements.md).</summary>
    public const int DefaultSolverSteps = 20;

    /// <summary>
    /// The sampler <c>ddpm sample</c> and <c>ddpm eval</c> use unless told otherwise: DPM-Solver++(2M) SDE with
    /// <see cref="DefaultSolverSteps"/> steps: as good as ancestral sampling with all T steps at a tenth of the model
    /// calls, also on under-trained models where the ODE solvers are not (docs/measurements.md, "Few-step solvers").
    /// A bare <see cref="SamplerOptions"/> stays the seed's Algorithm 2 (<see cref="SamplerKind.Ddpm"/>).
    /// </summary>
    public const SamplerKind RecommendedKind = SamplerKind.DpmSolver2MSde;

    /// <summary>
    /// The spacing a family uses unless told otherwise: uniform for DDPM and DDIM (the seed's and DDIM's), Karras' σ
    /// spacing for the solvers (on the quick checkpoint the smallest error against the probability-flow ODE's
    /// solution at 10 and 20 steps for both DPM-Solver++(2M) and UniPC; see docs/measurements.md).
    /// </summary>
    public static SpacingKind DefaultSpacing(SamplerKind kind) =>
        IsDataPredictionSolver(kind) ? SpacingKind.Karras : SpacingKind.Uniform;

    /// <summary>The steps a family takes unless told otherwise: all T for DDPM and DDIM,
    /// <see cref="DefaultSolverSteps"/> (at most T) for the solvers.</summary>
    public static int DefaultSteps(SamplerKind kind, int numTimesteps) =>
        IsDataPredictionSolver(kind) ? Math.Min(DefaultSolverSteps, numTimesteps) : numTimesteps;

    /// <summary>How reports name this sampler: "ddpm", "ddpm (respaced, uniform)", "ddim (η 0, uniform)", "unipc
    /// (karras)", "+ clip x0" etc.</summary>
    public string Describe(int numTimesteps)
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        int steps = Timesteps?.Count ?? Steps ?? DefaultSteps(Kind, numTimesteps);
        var spacing = Configuration.EnumNames.Name(Spacing ?? DefaultSpacing(Kind));
        var name = Kind switch
        {
            SamplerKind.Ddpm => steps < numTimesteps ? $"ddpm (respaced, {spacing})" : "ddpm",
            SamplerKind.Ddim when Timesteps is { } ts =>
                $"ddim (eta {Eta.ToString(inv)}, timesteps {string.Join('/', ts)})",
            SamplerKind.Ddim => $"ddim (eta {Eta.ToString(inv)}, {spacing})",
            _ => $"{Configuration.EnumNames.Name(Kind)} ({spacing})",
        };
        if (DynamicThreshold is { } p) name += $", dynamic threshold {p.ToString(inv)}";
        return name;
    }

    /// <summary>True for the probability-flow ODE solvers that step with x̂_0 (DPM-Solver++, UniPC).</summary>
    public static bool IsDataPredictionSolver(SamplerKind kind) =>
        kind is SamplerKind.DpmSolver2M or SamplerKind.DpmSolver2MSde or SamplerKind.UniPc;

    /// <summary>
    /// True for the samplers whose step depends only on the current x (DDPM, respaced DDPM, DDIM), so that RePaint's
    /// resampling may go back up the grid and come down again. The multistep solvers (DPM-Solver++, UniPC) carry the
    /// x̂_0 of the steps before, which a jump back in time would leave belonging to another path.
    /// </summary>
    public static bool IsSingleStep(SamplerKind kind) => kind is SamplerKind.Ddpm or SamplerKind.Ddim;

    /// <summary>
    /// The sampler for <paramref name="schedule"/> started at step <paramref name="startIndex"/> of its grid: the same
    /// family over the grid's tail Timesteps[startIndex..] (image-to-image starts there from a partly noised input).
    /// Index 0 is <see cref="Create(NoiseSchedule)"/> itself. Each family's tail is the whole run's lower part: DDPM's
    /// and DDIM's steps depend only on the two timesteps they join, and the solvers start at first order as at any
    /// start.
    /// </summary>
    public ISampler Create(NoiseSchedule schedule, int startIndex)
    {
        var full = Create(schedule);
        if (startIndex == 0) return full;
        if (startIndex < 0 || startIndex >= full.Timesteps.Count)
            throw new ArgumentOutOfRangeException(nameof(startIndex),
                $"the start must lie in 0..{full.Timesteps.Count - 1} (the grid's steps), got {startIndex}");
        var tail = full.Timesteps.Skip(startIndex).ToArray();
        var correction = new X0Correction { Clip = ClipX0, DynamicThreshold = DynamicThreshold };
        return Kind switch
        {
            SamplerKind.Ddim => new DdimSampler(schedule, tail, Eta, ClipX0),
            SamplerKind.Ddpm => new RespacedDdpmSampler(schedule, tail.Reverse().ToArray(), Variance, ClipX0),
            SamplerKind.DpmSolver2M => new DpmSolverSampler(new SolverGrid(schedule, tail), correction: correction),
            SamplerKind.DpmSolver2MSde =>
                new DpmSolverSampler(new SolverGrid(schedule, tail), stochastic: true, correction: correction),
            SamplerKind.UniPc => new UniPcSampler(new SolverGrid(schedule, tail), order: 2, correction: correction),
            _ => throw new ArgumentOutOfRangeException(nameof(Kind)),
        };
    }

    /// <summary>Builds the sampler for <paramref name="schedule"/>; throws <see cref="ArgumentException"/> naming the
    /// bad setting.</summary>
    public ISampler Create(NoiseSchedule schedule)
    {
        if (Timesteps is { } grid)
        {
            if (Kind != SamplerKind.Ddim)
                throw new ArgumentException("an explicit timestep grid applies to the ddim sampler only");
            if (Steps is { } s && s != grid.Count)
                throw new ArgumentException($"steps {s} differs from the {grid.Count} timesteps of the grid");
            if (Spacing is not null) throw new ArgumentException("an explicit timestep grid has no spacing");
            if (!(Eta >= 0 && Eta <= 1)) throw new ArgumentException($"eta must lie in [0, 1], got {Eta}");
            return new DdimSampler(schedule, grid, Eta, ClipX0);
        }
        int steps = Steps ?? DefaultSteps(Kind, schedule.T);
        if (steps < 1 || steps > schedule.T)
            throw new ArgumentException($"steps must lie in 1..T = 1..{schedule.T}, got {steps}");
        if (!Enum.IsDefined(Kind)) throw new ArgumentException($"sampler: unknown kind {(int)Kind}");
        var spacing = Spacing ?? DefaultSpacing(Kind);
        if (!Enum.IsDefined(spacing)) throw new ArgumentException($"spacing: unknown kind {(int)spacing}");
        if (!(Eta >= 0 && Eta <= 1)) throw new ArgumentException($"eta must lie in [0, 1], got {Eta}");
        if (Kind != SamplerKind.Ddim && Eta != 0) throw new ArgumentException("eta applies to the ddim sampler only");
        if (DynamicThreshold is { } p)
        {
            if (!IsDataPredictionSolver(Kind))
                throw new ArgumentException("dynamic threshold applies to the DPM-Solver++ and UniPC samplers only");
            if (!(p > 0 && p < 1)) throw new ArgumentException($"dynamic threshold must be a percentile in (0, 1), got {p}");
        }
        var correction = new X0Correction { Clip = ClipX0, DynamicThreshold = DynamicThreshold };
        return Kind switch
        {
            SamplerKind.Ddim => new DdimSampler(schedule, steps, Eta, spacing, ClipX0),
            SamplerKind.Ddpm when steps == schedule.T && spacing == SpacingKind.Uniform =>
                new DdpmSampler(new GaussianDiffusion(schedule), Variance, ClipX0),
            SamplerKind.Ddpm => new RespacedDdpmSampler(schedule, steps, spacing, Variance, ClipX0),
            SamplerKind.DpmSolver2M => new DpmSolverSampler(schedule, steps, spacing, order: 2, correction: correction),
            SamplerKind.DpmSolver2MSde => new DpmSolverSampler(schedule, steps, spacing, order: 2, stochastic: true, correction: correction),
            SamplerKind.UniPc => new UniPcSampler(schedule, steps, spacing, order: 2, correction: correction),
            _ => throw new ArgumentOutOfRangeException(nameof(Kind)),
        };
    }
}
