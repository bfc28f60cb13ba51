using Ddpm.Configuration;

namespace Ddpm.Runs;

/// <summary>Changes to a config's <c>train_params</c> asked for one run (the CLI's --epochs, --max-steps, …); null keeps the config's.</summary>
public sealed record TrainOverrides(int? Epochs = null, long? MaxSteps = null, int? BatchSize = null, double? Lr = null, long? Seed = null)
{
    /// <summary><paramref name="c"/> with these values in place, validated.</summary>
    public DdpmConfig Apply(DdpmConfig c) => (c with
    {
        Train = c.Train with
        {
            NumEpochs = Epochs ?? c.Train.NumEpochs, MaxSteps = MaxSteps ?? c.Train.MaxSteps, BatchSize = BatchSize ?? c.Train.BatchSize,
            Lr = Lr ?? c.Train.Lr, Seed = Seed ?? c.Train.Seed,
        },
    }).Validate();
}
