namespace Ddpm.Configuration;

/// <summary><c>train_params.lr_schedule</c>: how the learning rate decays after the warm-up.</summary>
public enum LrScheduleKind
{
    /// <summary>The configured lr throughout (the seed).</summary>
    Constant,
    /// <summary>Half a cosine from lr down to 0 at the run's last step (Loshchilov &amp; Hutter 2017, without
    /// restarts).</summary>
    Cosine,
    /// <summary>A straight line from lr down to 0 at the run's last step.</summary>
    Linear,
}
