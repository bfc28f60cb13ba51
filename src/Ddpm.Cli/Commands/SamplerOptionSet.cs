using System.CommandLine;
using Ddpm.Diffusion;
using Ddpm.Sampling;

namespace Ddpm.Cli.Commands;

/// <summary>
/// The options that choose a sampler, declared once for every command that samples (<c>sample</c>, <c>eval</c>):
/// <c>--sampler</c>, <c>--steps</c>, <c>--eta</c>, <c>--spacing</c>, <c>--sigma</c>, <c>--clip-x0</c>,
/// <c>--dynamic-threshold</c>. Their values are spelled as <see cref="Configuration.EnumNames"/> spells the enums, so a
/// new <see cref="SamplerKind"/> or <see cref="SpacingKind"/> member is a new accepted value.
/// </summary>
/// <param name="defaultKind">The sampler when <c>--sampler</c> is not given.</param>
/// <param name="alsoIn">What else the variance and clipping define, said in their help (eval: the likelihood's p_θ).</param>
internal sealed class SamplerOptionSet(SamplerKind defaultKind, string alsoIn = "")
{
    private readonly Option<Spelled<SamplerKind>> _kind = CommonOptions.EnumOption("--sampler",
        "reverse process: ddpm (ancestral, Algorithm 2), ddim, dpmpp-2m / dpmpp-2m-sde (DPM-Solver++) or unipc (UniPC bh2)",
        defaultKind, "sampler");
    private readonly Option<int?> _steps = new("--steps")
    {
        Description = $"reverse steps S ≤ T (default: T for ddpm and ddim, {SamplerOptions.DefaultSolverSteps} for the solvers; ddpm with S < T is respaced)",
    };
    private readonly Option<double> _eta = new("--eta") { Description = "DDIM η in [0, 1] (0 = deterministic)", DefaultValueFactory = _ => 0.0 };
    private readonly Option<SpacingKind?> _spacing = CommonOptions.OptionalEnumOption<SpacingKind>("--spacing",
        "timestep sub-sequence when S < T: uniform, quadratic, lambda (uniform in log-SNR) or karras (σ, ρ = 7) " +
        "(default: uniform for ddpm and ddim, karras for the solvers)", "spacing");
    private readonly Option<Spelled<VarianceKind>> _sigma =
        CommonOptions.EnumOption("--sigma", $"reverse variance σ_t²{alsoIn}: beta-tilde (the seed's) or beta", VarianceKind.BetaTilde, "variance");
    private readonly Option<bool> _clip = new("--clip-x0") { Description = $"clip the predicted x_0 to [-1, 1] and use the posterior mean{alsoIn}" };
    private readonly Option<double?> _threshold = new("--dynamic-threshold")
    {
        Description = "dpmpp-* and unipc: dynamic thresholding of the predicted x_0 at this percentile p in (0, 1), e.g. 0.995 (Saharia et al. 2022)",
    };

    /// <summary>Adds the options to <paramref name="command"/>.</summary>
    public void AddTo(Command command)
    {
        foreach (Option option in new Option[] { _kind, _steps, _eta, _spacing, _sigma, _clip, _threshold }) command.Add(option);
    }

    /// <summary>The sampler the command line asks for (checked against the model's T later, by <see cref="SamplerOptions.Create"/>).</summary>
    public SamplerOptions Read(ParseResult p) => new()
    {
        Kind = p.GetValue(_kind),
        Steps = p.GetValue(_steps),
        Eta = p.GetValue(_eta),
        Spacing = p.GetValue(_spacing),
        Variance = p.GetValue(_sigma),
        ClipX0 = p.GetValue(_clip),
        DynamicThreshold = p.GetValue(_threshold),
    };
}
