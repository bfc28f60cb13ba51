using System.Text;
using YamlDotNet.RepresentationModel;

namespace Ddpm.Configuration;

/// <summary>One section of the config schema (<c>train_params</c>): its keys, read and written in declaration
/// order.</summary>
public abstract class ConfigSection
{
    private protected ConfigSection(string name) => Name = name;

    /// <summary>The section's YAML name.</summary>
    public string Name { get; }
    /// <summary>The section's keys, in the order <see cref="DdpmConfig.ToYaml"/> writes them.</summary>
    public abstract IReadOnlyList<ConfigKey> Keys { get; }

    /// <summary>Throws <see cref="ConfigException"/> naming the first key of this section whose value is
    /// invalid.</summary>
    public abstract void Validate(DdpmConfig config);

    /// <summary>
    /// <paramref name="config"/> with every key given in <paramref name="node"/> (a mapping, or empty) read into it.
    /// Unknown keys are rejected before any value is read, so a typo is reported as the typo.
    /// </summary>
    internal DdpmConfig Read(DdpmConfig config, YamlNode node)
    {
        if (node is YamlScalarNode { Value: null or "" or "~" or "null" }) return config; // an empty section
        if (node is not YamlMappingNode map) throw new ConfigException(Name, "must be a mapping of keys to values");
        var given = new List<(ConfigKey? Key, string Name, YamlNode Value)>();
        foreach (var (k, v) in map.Children)
        {
            var name = (k as YamlScalarNode)?.Value ?? throw new ConfigException(Name, "keys must be plain words");
            given.Add((Keys.FirstOrDefault(key => key.Name == name), name, v));
        }
        foreach (var (key, name, _) in given)
            if (key is null)
                throw new ConfigException($"{Name}.{name}", $"unknown key (known: {string.Join(", ", Keys.Select(x => x.Name))})");
        foreach (var (key, _, value) in given) config = key!.Read(config, value);
        return config;
    }

    /// <summary>Appends the section and every key that is not left out, as <see cref="DdpmConfig.ToYaml"/> writes
    /// them.</summary>
    internal void Write(DdpmConfig config, StringBuilder yaml)
    {
        yaml.Append(Name).Append(":\n");
        foreach (var key in Keys)
            if (key.Format(config) is { } value)
                yaml.Append("  ").Append(key.Name).Append(": ").Append(value).Append('\n');
    }
}

/// <summary>
/// A section whose values live in the options record <typeparamref name="TOptions"/>: built by
/// <see cref="ConfigSchema"/> with one <see cref="Key{TValue}"/> call per key and one <see cref="Rule"/> per relation
/// between keys.
/// </summary>
public sealed class ConfigSection<TOptions> : ConfigSection where TOptions : class
{
    private readonly Func<DdpmConfig, TOptions> _get;
    private readonly Func<DdpmConfig, TOptions, DdpmConfig> _set;
    private readonly List<ConfigKey> _keys = [];
    private readonly List<Action<TOptions>> _checks = [];

    internal ConfigSection(string name, Func<DdpmConfig, TOptions> get, Func<DdpmConfig, TOptions, DdpmConfig> set) : base(name)
    {
        _get = get;
        _set = set;
    }

    public override IReadOnlyList<ConfigKey> Keys => _keys;

    /// <summary>
    /// Declares a key: its YAML <paramref name="name"/> and <paramref name="type"/>, the record property it is read
    /// into (<paramref name="get"/>, <paramref name="set"/>), a one-line <paramref name="doc"/>, and optionally a
    /// <paramref name="check"/> of its value alone that returns the problem (null = fine).
    /// </summary>
    internal ConfigSection<TOptions> Key<TValue>(string name, ConfigType<TValue> type, Func<TOptions, TValue> get,
        Func<TOptions, TValue, TOptions> set, string doc, Func<TValue, string?>? check = null)
    {
        var path = $"{Name}.{name}";
        _keys.Add(new ConfigKey(Name, name, type.Description, doc,
            config => type.Write(get(_get(config))),
            (config, node) => _set(config, set(_get(config), type.Read(node, path)))));
        if (check is not null)
            _checks.Add(options =>
            {
                if (check(get(options)) is { } problem) throw new ConfigException(path, problem);
            });
        return this;
    }

    /// <summary>Declares a relation between keys, reported against <paramref name="key"/>: <paramref name="problem"/>
    /// returns what is wrong, or null.</summary>
    internal ConfigSection<TOptions> Rule(string key, Func<TOptions, string?> problem)
    {
        if (_keys.All(k => k.Name != key)) throw new ArgumentException($"{Name} declares no key '{key}'", nameof(key));
        var path = $"{Name}.{key}";
        _checks.Add(options =>
        {
            if (problem(options) is { } p) throw new ConfigException(path, p);
        });
        return this;
    }

    /// <summary>Checks every key's value, then every rule, in declaration order; throws <see cref="ConfigException"/>
    /// at the first problem.</summary>
    public void Validate(TOptions options)
    {
        foreach (var check in _checks) check(options);
    }

    public override void Validate(DdpmConfig config) => Validate(_get(config));
}
