using Ddpm.Configuration;

namespace Ddpm.Runs;

/// <summary>Changes to a config's <c>train_params</c> asked for one run (the CLI's --epochs, --max-steps, …); null
/// keeps the config's.</summary>
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

    /// <summary>The given values as the CLI spells them (<c>--epochs 3 --seed 1</c>), e.g. for the command that resumes
    /// a run.</summary>
    public IEnumerable<string> Arguments()
    {
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        if (Epochs is { } e) yield return $"--epochs {e.ToString(inv)}";
        if (MaxSteps is { } m) yield return $"--max-steps {m.ToString(inv)}";
        if (BatchSize is { } b) yield return $"--batch-size {b.ToString(inv)}";
        if (Lr is { } l) yield return $"--lr {l.ToString("R", inv)}";
        if (Seed is { } s) yield return $"--seed {s.ToString(inv)}";
    }
}
