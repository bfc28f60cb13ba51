using System.CommandLine;
using System.CommandLine.Parsing;
using Ddpm.Configuration;
using static TorchSharp.torch;

namespace Ddpm.Cli.Commands;

/// <summary>Options several commands share, and their interpretation.</summary>
internal static class CommonOptions
{
    /// <summary>An option with a description and a default.</summary>
    public static Option<T> Opt<T>(string name, string description, T defaultValue) =>
        new(name) { Description = description, DefaultValueFactory = _ => defaultValue };

    /// <summary>An option with a description, null when not given.</summary>
    public static Option<T> Opt<T>(string name, string description, bool required = false) =>
        new(name) { Description = description, Required = required };

    public static Option<Spelled<DeviceChoice>> DeviceOption() =>
        EnumOption("--device", "cpu or cuda (default: cuda when available, else cpu)", DeviceChoice.Auto, "device");

    /// <summary>
    /// An option whose value is a spelling of <typeparamref name="T"/> as configs spell it (<see cref="EnumNames"/>, any
    /// case); anything else is a usage error listing the known spellings (<paramref name="what"/> names the value in it).
    /// </summary>
    public static Option<Spelled<T>> EnumOption<T>(string name, string description, T defaultValue, string what = "value") where T : struct, Enum
    {
        // One delegate as parser and default (System.CommandLine then calls it with no tokens when the option is absent).
        Func<ArgumentResult, Spelled<T>> parse = result => new(result.Tokens.Count == 0 ? defaultValue : Parse<T>(result, name, what));
        var option = new Option<Spelled<T>>(name) { Description = description, CustomParser = parse, DefaultValueFactory = parse };
        Spell(option, EnumNames.Names<T>());
        return option;
    }

    /// <summary>As <see cref="EnumOption{T}"/>, with no default: null when the option is not given.</summary>
    public static Option<T?> OptionalEnumOption<T>(string name, string description, string what = "value") where T : struct, Enum
    {
        var option = new Option<T?>(name) { Description = description, CustomParser = result => Parse<T>(result, name, what) };
        Spell(option, EnumNames.Names<T>());
        return option;
    }

    /// <summary>Help shows the spellings (<c>--device &lt;auto|cpu|cuda&gt;</c>) and shells complete them.</summary>
    private static void Spell(Option option, IReadOnlyList<string> names)
    {
        option.HelpName = string.Join("|", names);
        option.CompletionSources.Add(names.ToArray());
    }

    private static T Parse<T>(ArgumentResult result, string name, string what) where T : struct, Enum
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (EnumNames.TryParse<T>(text, out var value)) return value;
        result.AddError($"{name}: {EnumNames.Unknown<T>(text, what)}");
        return default;
    }

    public static Device ResolveDevice(DeviceChoice choice)
    {
        var device = choice switch
        {
            DeviceChoice.Auto => cuda.is_available() ? CUDA : CPU,
            DeviceChoice.Cpu => CPU,
            DeviceChoice.Cuda => cuda.is_available() ? CUDA
                : throw new UsageException("--device cuda: no CUDA device is available (set DDPM_LIBTORCH to PyTorch's torch/lib folder, " +
                    "with a build made with -p:DdpmCpuLibTorch=false, e.g. scripts/bundle.sh)"),
            _ => throw new ArgumentOutOfRangeException(nameof(choice)),
        };
        try { Ddpm.Runtime.DevicePolicy.Apply(device); }
        catch (ArgumentException e) { throw new UsageException(e.Message); }
        return device;
    }
}
