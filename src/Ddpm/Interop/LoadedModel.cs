using Ddpm.Configuration;
using Ddpm.Models;
using Ddpm.Training;

namespace Ddpm.Interop;

/// <summary>A U-Net with its weights loaded, and where they came from. Disposing disposes the model.</summary>
/// <param name="Model">The U-Net, on the CPU, in training mode as constructed (call <c>eval()</c> to sample).</param>
/// <param name="Config">The checkpoint's stored config, or the one supplied for raw weights.</param>
/// <param name="Format">What the file was.</param>
/// <param name="Manifest">The checkpoint's manifest; null for raw weights.</param>
/// <param name="MissingKeys">Keys left at their initial values (only with <c>strict: false</c>).</param>
public sealed record LoadedModel(UNet Model, DdpmConfig Config, WeightFormat Format, CheckpointManifest? Manifest,
    IReadOnlyList<string> MissingKeys) : IDisposable
{
    /// <summary>Tensors holding NaN or infinite values, each as "name (k of n values)"; only non-empty when loaded with
    /// allowNonFinite.</summary>
    public IReadOnlyList<string> NonFiniteTensors { get; init; } = [];

    /// <summary>
    /// Whether the model holds the checkpoint's EMA weights (loaded with <c>useEma</c> from a checkpoint that has
    /// them).
    /// </summary>
    public bool UsesEma { get; init; }

    public void Dispose() => Model.Dispose();
}
