using YamlDotNet.RepresentationModel;

namespace Ddpm.Configuration;

/// <summary>
/// One key of the config schema, as <see cref="ConfigSchema"/> declares it: where it lives, what type it holds, what it
/// means, and how it is read from and written to YAML. Its default is the options record's initial value.
/// </summary>
public sealed class ConfigKey
{
    private readonly Func<DdpmConfig, string?> _format;
    private readonly Func<DdpmConfig, YamlNode, DdpmConfig> _read;

    internal ConfigKey(string section, string name, string type, string doc, Func<DdpmConfig, string?> format,
        Func<DdpmConfig, YamlNode, DdpmConfig> read)
    {
        Section = section;
        Name = name;
        Type = type;
        Doc = doc;
        _format = format;
        _read = read;
    }

    /// <summary>The section (<c>train_params</c>).</summary>
    public string Section { get; }
    /// <summary>The key's YAML name (<c>batch_size</c>).</summary>
    public string Name { get; }
    /// <summary>Section and name, as errors name the key (<c>train_params.batch_size</c>).</summary>
    public string Path => Section + "." + Name;
    /// <summary>The value's type in words (<c>integer</c>, <c>list of integers</c>, <c>one of: linear,
    /// cosine</c>).</summary>
    public string Type { get; }
    /// <summary>One line on what the key means.</summary>
    public string Doc { get; }

    /// <summary>The key's value in <paramref name="config"/> as YAML text, or null when it is left out (an unset
    /// optional key).</summary>
    public string? Format(DdpmConfig config) => _format(config);

    /// <summary>
    /// <paramref name="config"/> with this key set from <paramref name="node"/>; throws <see cref="ConfigException"/>
    /// naming the key when the node is not of the key's type (range checks come with
    /// <see cref="DdpmConfig.Validate"/>).
    /// </summary>
    internal DdpmConfig Read(DdpmConfig config, YamlNode node) => _read(config, node);
}
