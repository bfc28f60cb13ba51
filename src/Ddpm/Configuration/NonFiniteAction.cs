namespace Ddpm.Configuration;

/// <summary><c>train_params.on_nonfinite</c>: what a NaN or infinite loss or gradient does to the run.</summary>
public enum NonFiniteAction
{
    /// <summary>Stop with an error naming the step; the last checkpoint is left as it was.</summary>
    Stop,
    /// <summary>Leave the weights and optimizer untouched for that step, warn, and go on.</summary>
    Skip,
}
