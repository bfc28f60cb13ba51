namespace Ddpm.Evaluation;

/// <summary>How <c>ddpm eval</c> evaluates the variational bound on −log p(x).</summary>
public enum NllMethod
{
    /// <summary>Every one of the T terms: T model evaluations per image.</summary>
    Exact,
    /// <summary>Prior and decoder exactly, K of the T − 1 KL terms drawn without replacement and scaled by (T −
    /// 1)/K.</summary>
    Estimate,
    /// <summary>Skip the likelihood.</summary>
    None,
}
