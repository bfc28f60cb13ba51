using System.Text;
using Ddpm.IO;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;
using YamlDotNet.RepresentationModel;

namespace Ddpm.Configuration;

/// <summary>
/// A whole experiment in the reference's YAML schema (<c>dataset_params</c>, <c>diffusion_params</c>,
/// <c>model_params</c>, <c>train_params</c>), so the reference's <c>config/default.yaml</c> loads unchanged. Missing
/// keys take the reference's defaults; unknown keys are errors (a typo must not be silently ignored). Every key is
/// declared once, in <see cref="ConfigSchema"/>. Untrusted text (a downloaded config, a checkpoint's manifest) is
/// bounded before it is parsed: at most <see cref="MaxYamlBytes"/> and <see cref="MaxYamlDepth"/> levels of nesting, so
/// a crafted file gets a clear error, never a stack overflow.
/// </summary>
public sealed record DdpmConfig
{
    /// <summary>The largest config accepted (a real one is under 2 KB).</summary>
    public const int MaxYamlBytes = 1 << 20;
    /// <summary>The deepest nesting of mappings and lists accepted (a real config nests 2 deep).</summary>
    public const int MaxYamlDepth = 32;

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
        if (PathCheck.FileProblem(path) is { } problem) throw new ConfigException("(file)", $"config file '{PathCheck.Shorten(path)}' {problem}");
        long length = new FileInfo(path).Length;
        if (length > MaxYamlBytes)
            throw new ConfigException("(file)", $"config file '{path}' holds {length:N0} bytes; a config may hold at most {MaxYamlBytes:N0}");
        var text = File.ReadAllText(path);
        if (string.IsNullOrWhiteSpace(text))
            throw new ConfigException("(file)", $"config file '{path}' is empty (give at least one section, e.g. model_params; " +
                "'ddpm info --keys' lists every key and its default)");
        return Parse(text);
    }

    /// <summary>Parses and validates YAML text.</summary>
    public static DdpmConfig Parse(string yaml)
    {
        if (yaml.Length > MaxYamlBytes)
            throw new ConfigException("(yaml)", $"the config holds {yaml.Length:N0} characters; a config may hold at most {MaxYamlBytes:N0}");
        var stream = new YamlStream();
        try
        {
            CheckDepth(yaml);
            stream.Load(new StringReader(yaml));
        }
        catch (YamlException e) { throw new ConfigException("(yaml)", $"not valid YAML at line {e.Start.Line}: {e.Message}"); }
        // YamlDotNet's scanner throws these on some malformed input (found by fuzzing).
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            throw new ConfigException("(yaml)", $"not valid YAML: {e.Message}");
        }
        if (stream.Documents.Count == 0 || stream.Documents[0].RootNode is YamlScalarNode { Value: null or "" or "~" or "null" })
            throw new ConfigException("(root)", "the config is empty (give at least one section, e.g. model_params; 'ddpm info --keys' lists every key)");
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

    /// <summary>
    /// Walks the YAML's events (YamlDotNet's parser is iterative) and refuses nesting deeper than
    /// <see cref="MaxYamlDepth"/> before the representation model, which recurses once per level, is built.
    /// </summary>
    private static void CheckDepth(string yaml)
    {
        var parser = new Parser(new StringReader(yaml));
        int depth = 0;
        while (parser.MoveNext())
        {
            switch (parser.Current)
            {
                case MappingStart or SequenceStart:
                    if (++depth > MaxYamlDepth)
                        throw new ConfigException("(yaml)", $"nested more than {MaxYamlDepth} levels deep at line {parser.Current.Start.Line} " +
                            "(a config is a mapping of sections of plain values and short lists)");
                    break;
                case MappingEnd or SequenceEnd:
                    depth--;
                    break;
            }
        }
    }

    /// <summary>The config as YAML in the same schema (round-trips through <see cref="Parse"/>).</summary>
    public string ToYaml()
    {
        var yaml = new StringBuilder();
        foreach (var section in ConfigSchema.Sections) section.Write(this, yaml);
        return yaml.ToString();
    }
}
