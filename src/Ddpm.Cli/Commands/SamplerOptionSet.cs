using Ddpm.Diffusion;

namespace Ddpm.Cli.Commands;

/// <summary>
/// The options that choose a sampler, declared once for every command that samples (<c>sample</c>, <c>eval</c>, …).
/// Values are spelled as <see cref="Configuration.EnumNames"/> spells the enums, so a new <see cref="SamplerKind"/> or
/// <see cref="SpacingKind"/> member is a new accepted value. <paramref name="alsoIn"/> says what else the variance and
/// clipping define (eval: the likelihood's p_θ).
/// </summary>
internal sealed class SamplerOptionSet(SamplerKind defaultKind, string alsoIn = "")
{
    private readonly Option<Spelled<SamplerKind>> _kind = EnumOption("--sampler", "reverse process: ddpm (ancestral, Algorithm 2), ddim, " +
        "dpmpp-2m / dpmpp-2m-sde (DPM-Solver++) or unipc (UniPC bh2)", defaultKind, "sampler");
    private readonly Option<int?> _steps = Opt<int?>("--steps", "reverse steps S ≤ T (default: T for ddpm and ddim, " +
        $"{SamplerOptions.DefaultSolverSteps} for the solvers; ddpm with S < T is respaced)");
    private readonly Option<double> _eta = Opt("--eta", "DDIM η in [0, 1] (0 = deterministic)", 0.0);
    private readonly Option<SpacingKind?> _spacing = OptionalEnumOption<SpacingKind>("--spacing", "timestep sub-sequence when S < T: " +
        "uniform, quadratic, lambda (uniform in log-SNR) or karras (σ, ρ = 7) (default: uniform for ddpm and ddim, karras for the solvers)", "spacing");
    private readonly Option<Spelled<VarianceKind>> _sigma =
        EnumOption("--sigma", $"reverse variance σ_t²{alsoIn}: beta-tilde (the seed's) or beta", VarianceKind.BetaTilde, "variance");
    private readonly Option<bool> _clip = Opt<bool>("--clip-x0", $"clip the predicted x_0 to [-1, 1] and use the posterior mean{alsoIn}");
    private readonly Option<double?> _threshold = Opt<double?>("--dynamic-threshold", "dpmpp-* and unipc: dynamic thresholding of the " +
        "predicted x_0 at this percentile p in (0, 1), e.g. 0.995 (Saharia et al. 2022)");

    public IEnumerable<Option> All => [_kind, _steps, _eta, _spacing, _sigma, _clip, _threshold];

    /// <summary>The sampler asked for (checked against the model's T by <see cref="SamplerOptions.Create"/>).</summary>
    public SamplerOptions Read(ParseResult p) => new()
    {
        Kind = p.GetValue(_kind), Steps = p.GetValue(_steps), Eta = p.GetValue(_eta), Spacing = p.GetValue(_spacing),
        Variance = p.GetValue(_sigma), ClipX0 = p.GetValue(_clip), DynamicThreshold = p.GetValue(_threshold),
    };
}
