using Ddpm.Configuration;

namespace Ddpm.Training;

/// <summary>
/// The learning rate at each optimizer step: a linear warm-up over the first <see cref="WarmupSteps"/> steps, then
/// constant, or a cosine or linear decay reaching 0 at step <see cref="TotalSteps"/> (the run's end). A pure function
/// of the step, so a resumed run continues on the same curve.
/// </summary>
public sealed record LearningRateSchedule(double BaseLr, LrScheduleKind Kind, long WarmupSteps, long TotalSteps)
{
    /// <summary>The schedule <c>train_params</c> asks for, over a run of <paramref name="totalSteps"/> optimizer
    /// steps.</summary>
    public static LearningRateSchedule FromOptions(TrainOptions options, long totalSteps) =>
        new(options.Lr, options.LrSchedule, options.LrWarmupSteps, totalSteps);

    /// <summary>
    /// lr for 0-based step <paramref name="step"/> (the step about to be taken): lr·(s+1)/W during the warm-up (s &lt;
    /// W), then with progress p = (s − W)/(S − W): constant lr, cosine lr·½(1 + cos πp) (Loshchilov &amp; Hutter 2017,
    /// eq. 5 with η_min = 0), or linear lr·(1 − p); p is clamped to [0, 1].
    /// </summary>
    public double At(long step)
    {
        if (step < WarmupSteps) return BaseLr * (step + 1) / WarmupSteps;
        if (Kind == LrScheduleKind.Constant) return BaseLr;
        long span = TotalSteps - WarmupSteps;
        double p = span <= 0 ? 1 : Math.Clamp((double)(step - WarmupSteps) / span, 0, 1);
        return Kind switch
        {
            LrScheduleKind.Cosine => BaseLr * 0.5 * (1 + Math.Cos(Math.PI * p)),
            LrScheduleKind.Linear => BaseLr * (1 - p),
            _ => throw new InvalidOperationException($"unknown lr schedule {Kind}"),
        };
    }
}
