namespace Ddpm.Configuration;

/// <summary>An invalid configuration: <see cref="Key"/> names the offending key (e.g.
/// <c>model_params.num_heads</c>).</summary>
public sealed class ConfigException(string key, string problem)
    : Exception($"config key '{key}': {problem}")
{
    public string Key { get; } = key;
    public string Problem { get; } = problem;
}
