using System.Text;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Ddpm.Configuration;

/// <summary>
/// A whole experiment in the reference's YAML schema (<c>dataset_params</c>, <c>diffusion_params</c>,
/// <c>model_params</c>, <c>train_params</c>), so the reference's <c>config/default.yaml</c> loads unchanged.
/// Missing keys take the reference's defaults; unknown keys are errors (a typo must not be silently ignored).
/// Every key is declared once, in <see cref="ConfigSchema"/>.
/// </summary>
public sealed record DdpmConfig
{
    public DatasetOptions Dataset { get; init; } = new();
    public DiffusionOptions Diffusion { get; init; } = new();
    public UNetOptions Model { get; init; } = new();
    public TrainOptions Train { get; init; } = new();

    /// <summary>Validates every section; throws <see cref="ConfigException"/> naming the key.</summary>
    public DdpmConfig Validate()
    {
        foreach (var section in ConfigSchema.Sections) section.Validate(this);
        return this;
    }

    /// <summary>Reads and validates a YAML file.</summary>
    public static DdpmConfig Load(string path)
    {
        if (!File.Exists(path)) throw new ConfigException("(file)", $"config file '{path}' does not exist");
        return Parse(File.ReadAllText(path));
    }

    /// <summary>Parses and validates YAML text.</summary>
    public static DdpmConfig Parse(string yaml)
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(yaml)); }
        catch (YamlException e) { throw new ConfigException("(yaml)", $"not valid YAML at line {e.Start.Line}: {e.Message}"); }
        // YamlDotNet's scanner throws these on some malformed input (found by fuzzing).
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            throw new ConfigException("(yaml)", $"not valid YAML: {e.Message}");
        }
        if (stream.Documents.Count == 0) return new DdpmConfig().Validate();
        if (stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new ConfigException("(root)", "the document must be a mapping of sections");
        var config = new DdpmConfig();
        foreach (var (keyNode, value) in root.Children)
        {
            var name = (keyNode as YamlScalarNode)?.Value ?? throw new ConfigException("(root)", "section names must be plain words");
            var section = ConfigSchema.Sections.FirstOrDefault(s => s.Name == name)
                ?? throw new ConfigException(name, $"unknown section (expected {string.Join(", ", ConfigSchema.Sections.Select(s => s.Name))})");
            config = section.Read(config, value);
        }
        return config.Validate();
    }

    /// <summary>The config as YAML in the same schema (round-trips through <see cref="Parse"/>).</summary>
    public string ToYaml()
    {
        var yaml = new StringBuilder();
        foreach (var section in ConfigSchema.Sections) section.Write(this, yaml);
        return yaml.ToString();
    }
}
