namespace Ddpm.Tests;

/// <summary>
/// Tests that seed TorchSharp's global generator (Trainer.Create, the CLI) and compare results bit for bit, or that
/// redirect the Console. xunit runs this collection on its own, after the parallel ones, so no other test draws from
/// the global generator between a manual_seed and the model construction it seeds.
/// </summary>
[CollectionDefinition(Name, DisableParallelization = true)]
public sealed class GlobalRngCollection
{
    public const string Name = "global RNG and console";
}
