using System.Globalization;
using System.Text.Json;
using YamlDotNet.RepresentationModel;

namespace Ddpm.Configuration;

/// <summary>
/// What a config value is: how a YAML node becomes one (throwing <see cref="ConfigException"/> naming the key) and how
/// it is written back (null = the key is left out). The instances are on <see cref="ConfigType"/>.
/// </summary>
/// <param name="Description">The type in words, for docs: <c>integer</c>, <c>list of integers</c>, <c>one of: linear,
/// cosine</c>.</param>
/// <param name="Read">Reads a node; the string is the key's path (<c>train_params.lr</c>) for error messages.</param>
/// <param name="Write">The value as YAML, or null to leave the key out.</param>
internal sealed record ConfigType<T>(string Description, Func<YamlNode, string, T> Read, Func<T, string?> Write);

/// <summary>The value types config keys use.</summary>
internal static class ConfigType
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static readonly ConfigType<int> Int = new("integer", (node, key) => ParseInt(Scalar(node, key), key), v => v.ToString(Inv));

    public static readonly ConfigType<long> Long = new("integer", (node, key) =>
    {
        var s = Scalar(node, key);
        return long.TryParse(s, NumberStyles.Integer, Inv, out var v) ? v : throw new ConfigException(key, $"expected an integer, got '{s}'");
    }, v => v.ToString(Inv));

    public static readonly ConfigType<double> Number = new("number", (node, key) =>
    {
        var s = Scalar(node, key);
        return double.TryParse(s, NumberStyles.Float, Inv, out var v) ? v : throw new ConfigException(key, $"expected a number, got '{s}'");
    }, v => v.ToString("R", Inv));

    public static readonly ConfigType<bool> Bool = new("true or false", (node, key) => ParseBool(Scalar(node, key), key), WriteBool);

    public static readonly ConfigType<string> Text = new("text", Scalar, Quote);

    /// <summary>Text that may be absent (null), and is then not written.</summary>
    public static readonly ConfigType<string?> OptionalText = new("text (optional)", Scalar, v => v is null ? null : Quote(v));

    public static readonly ConfigType<IReadOnlyList<int>> IntList = new("list of integers",
        (node, key) => List(node, key).Select(s => ParseInt(s, key)).ToList(), v => "[" + string.Join(", ", v.Select(x => x.ToString(Inv))) + "]");

    public static readonly ConfigType<IReadOnlyList<bool>> BoolList = new("list of true/false",
        (node, key) => List(node, key).Select(s => ParseBool(s, key)).ToList(), v => "[" + string.Join(", ", v.Select(WriteBool)) + "]");

    /// <summary>A list of true/false that may be absent (null), and is then not written.</summary>
    public static readonly ConfigType<IReadOnlyList<bool>?> OptionalBoolList = new("list of true/false (optional)",
        (node, key) => BoolList.Read(node, key), v => v is null ? null : BoolList.Write(v));

    /// <summary>A member of <typeparamref name="T"/> in its <see cref="EnumNames"/> spelling; <paramref name="what"/>
    /// names it in errors.</summary>
    public static ConfigType<T> Enum<T>(string what) where T : struct, System.Enum => new(
        "one of: " + string.Join(", ", EnumNames.Names<T>()),
        (node, key) =>
        {
            var s = Scalar(node, key);
            return EnumNames.TryParse<T>(s, out var v) ? v : throw new ConfigException(key, EnumNames.Unknown<T>(s, what));
        },
        v => EnumNames.Name(v));

    /// <summary>The longest single value accepted (a path may hold 4,095 bytes on Linux).</summary>
    public const int MaxValueLength = 4096;
    /// <summary>The longest list accepted (a U-Net has a handful of levels).</summary>
    public const int MaxListLength = 64;

    private static string Scalar(YamlNode node, string key) => node is YamlScalarNode { Value: { } value }
        ? value.Length <= MaxValueLength ? value : throw new ConfigException(key, $"a value of {value.Length:N0} characters; at most {MaxValueLength:N0} are allowed")
        : throw new ConfigException(key, "expected a single value");

    private static int ParseInt(string s, string key) =>
        int.TryParse(s, NumberStyles.Integer, Inv, out var v) ? v : throw new ConfigException(key, $"expected an integer, got '{s}'");

    private static bool ParseBool(string s, string key) =>
        bool.TryParse(s, out var v) ? v : throw new ConfigException(key, $"expected true or false, got '{s}'");

    private static string WriteBool(bool b) => b ? "true" : "false";

    private static IReadOnlyList<string> List(YamlNode node, string key)
    {
        if (node is not YamlSequenceNode seq) throw new ConfigException(key, "expected a list like [32, 64]");
        if (seq.Children.Count > MaxListLength) throw new ConfigException(key, $"a list of {seq.Children.Count:N0} entries; at most {MaxListLength} are allowed");
        return seq.Children.Select(c => (c as YamlScalarNode)?.Value ?? throw new ConfigException(key, "list items must be single values")).ToList();
    }

    /// <summary>A single-quoted YAML scalar; text with control characters (a newline, a tab) double-quoted with
    /// escapes, so it reads back as written.</summary>
    private static string Quote(string s) =>
        s.Any(char.IsControl) ? JsonSerializer.Serialize(s) : "'" + s.Replace("'", "''") + "'";
}
