using System.Text.Json.Serialization;
using Ddpm.Configuration;
using Ddpm.Sampling;

namespace Ddpm.Distillation;

/// <summary>
/// What <c>ddpm distill</c> does: progressive distillation (Salimans &amp; Ho 2022) of <see cref="Teacher"/> from its
/// DDIM grid of <see cref="FromSteps"/> steps down to a student of <see cref="ToSteps"/>, halving the steps each round.
/// Stored in every checkpoint of the run (<see cref="DistillationState"/>), so a resume needs nothing else.
/// </summary>
public sealed record DistillationOptions
{
    [JsonConverter(typeof(JsonStringEnumConverter<DistillationMethod>))]
    public DistillationMethod Method { get; init; } = DistillationMethod.Progressive;
    /// <summary>
    /// The teacher: a ddpm checkpoint (its EMA weights when it has them, unless <see cref="TeacherEma"/> is false).
    /// </summary>
    public string Teacher { get; init; } = "";
    /// <summary>Model calls per image of the final student, N.</summary>
    public int ToSteps { get; init; } = 4;
    /// <summary>
    /// Steps of the teacher's DDIM grid the first round starts from, N·2^k (k ≥ 1 rounds); null: the smallest such
    /// number that is at least <see cref="DefaultFromSteps"/>.
    /// </summary>
    public int? FromSteps { get; init; }
    /// <summary>
    /// The spacing of the teacher's grid; every student grid is a subset of it (every 2nd, 4th, … point).
    /// </summary>
    [JsonConverter(typeof(JsonStringEnumConverter<SpacingKind>))]
    public SpacingKind Spacing { get; init; } = SpacingKind.Uniform;
    /// <summary>
    /// What the student outputs: v (the paper's choice; ε is ill-conditioned at the noisiest steps), x_0 or ε.
    /// </summary>
    [JsonConverter(typeof(JsonStringEnumConverter<PredictionTarget>))]
    public PredictionTarget StudentPrediction { get; init; } = PredictionTarget.V;
    /// <summary>
    /// Guidance weight w of the teacher distilled, for a class-conditional teacher: fixed during distillation and built
    /// into the student (null: <see cref="DefaultGuidance"/> for a class-conditional teacher, 0 for an unconditional
    /// one).
    /// </summary>
    public double? Guidance { get; init; }
    /// <summary>
    /// Whether the teacher's DDIM steps clip x̂_0 to [−1, 1] (as <c>--clip-x0</c> samples it); the student samples the
    /// same way.
    /// </summary>
    public bool ClipX0 { get; init; } = true;
    /// <summary>Use the teacher checkpoint's EMA weights when it has them.</summary>
    public bool TeacherEma { get; init; } = true;
    /// <summary>Optimizer steps per round (each halves the steps).</summary>
    public long StepsPerRound { get; init; } = 500;
    public int BatchSize { get; init; } = 64;
    /// <summary>
    /// Adam's learning rate at the top of each round; warmed up over <see cref="WarmupSteps"/>, then linear to 0 at the
    /// round's end (as the paper).
    /// </summary>
    public double Lr { get; init; } = 3e-4;
    public long WarmupSteps { get; init; } = 50;
    /// <summary>
    /// Decay of the student's EMA (restarted each round); the EMA is what the next round learns from and what samples.
    /// </summary>
    public double EmaDecay { get; init; } = 0.995;
    /// <summary>
    /// Probability of training a class-conditional student on the null label (the teacher's unconditional model).
    /// </summary>
    public double LabelDropout { get; init; } = 0.1;
    /// <summary>Seed of the data order, timesteps and noise.</summary>
    public long Seed { get; init; }
    /// <summary>Optimizer steps between checkpoints within a round (each round's end is always saved).</summary>
    public long SaveEvery { get; init; } = 500;
    /// <summary>
    /// The dataset's folder instead of the teacher config's <c>dataset_params.root</c> (null: the config's).
    /// </summary>
    public string? DataRoot { get; init; }

    /// <summary>The smallest first grid when <see cref="FromSteps"/> is not given.</summary>
    public const int DefaultFromSteps = 16;
    /// <summary>
    /// The guidance weight the project samples and evaluates class-conditional models with (README, issue 14).
    /// </summary>
    public const double DefaultGuidance = 3;

    /// <summary>
    /// The first grid's steps: <see cref="FromSteps"/>, or N doubled until it reaches <see cref="DefaultFromSteps"/>
    /// (at least once).
    /// </summary>
    public int ResolvedFromSteps
    {
        get
        {
            if (FromSteps is { } m) return m;
            int steps = ToSteps * 2;
            while (steps < DefaultFromSteps) steps *= 2;
            return steps;
        }
    }

    /// <summary>Rounds from <see cref="ResolvedFromSteps"/> down to <see cref="ToSteps"/>.</summary>
    public int Rounds => (int)Math.Round(Math.Log2((double)ResolvedFromSteps / ToSteps));

    /// <summary>Checks the settings on their own; <see cref="ArgumentException"/> names the bad one.</summary>
    public DistillationOptions Validate()
    {
        if (string.IsNullOrEmpty(Teacher)) throw new ArgumentException("teacher: a checkpoint is required");
        if (!Enum.IsDefined(Method)) throw new ArgumentException($"method: unknown kind {(int)Method}");
        if (ToSteps < 1) throw new ArgumentException($"to-steps must be >= 1, got {ToSteps}");
        int from = ResolvedFromSteps;
        if (from <= ToSteps || from % ToSteps != 0 || !int.IsPow2(from / ToSteps))
            throw new ArgumentException("from-steps must be to-steps × 2^k with k >= 1 (each round halves the " +
                $"steps), got {from} for to-steps {ToSteps}");
        if (!Enum.IsDefined(Spacing)) throw new ArgumentException($"spacing: unknown kind {(int)Spacing}");
        if (!Enum.IsDefined(StudentPrediction))
            throw new ArgumentException($"student prediction: unknown kind {(int)StudentPrediction}");
        if (Guidance is { } w && !(w >= 0 && double.IsFinite(w)))
            throw new ArgumentException($"guidance must be a finite number >= 0, got {w}");
        if (StepsPerRound < 1) throw new ArgumentException($"steps per round must be >= 1, got {StepsPerRound}");
        if (BatchSize < 1) throw new ArgumentException($"batch size must be >= 1, got {BatchSize}");
        if (!(Lr > 0 && double.IsFinite(Lr))) throw new ArgumentException($"lr must be a finite number > 0, got {Lr}");
        if (WarmupSteps < 0) throw new ArgumentException($"warm-up steps must be >= 0, got {WarmupSteps}");
        if (!(EmaDecay > 0 && EmaDecay < 1))
            throw new ArgumentException($"ema decay must lie in (0, 1), got {EmaDecay}");
        if (!(LabelDropout >= 0 && LabelDropout < 1))
            throw new ArgumentException($"label dropout must lie in [0, 1), got {LabelDropout}");
        if (SaveEvery < 1) throw new ArgumentException($"save-every must be >= 1, got {SaveEvery}");
        return this;
    }
}
