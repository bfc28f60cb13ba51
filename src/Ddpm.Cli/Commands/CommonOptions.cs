using System.CommandLine.Parsing;
using Ddpm.Interop;
using static TorchSharp.torch;

namespace Ddpm.Cli.Commands;

/// <summary>The <c>--device</c> values (auto: CUDA when a device is available, else the CPU).</summary>
internal enum DeviceChoice { Auto, Cpu, Cuda }

/// <summary>
/// An enum option's value: converts to <typeparamref name="T"/> implicitly and prints as configs spell it
/// (<see cref="EnumNames"/>), so help shows <c>[default: auto]</c>, not the member name.
/// </summary>
internal readonly record struct Spelled<T>(T Value) where T : struct, Enum
{
    public static implicit operator T(Spelled<T> spelled) => spelled.Value;
    public override string ToString() => EnumNames.Name(Value);
}

/// <summary>Options several commands share, their interpretation, and the one way a command is put together.</summary>
internal static class CommonOptions
{
    /// <summary>A command with its options and its action (which returns the exit code).</summary>
    public static Command Cmd(string name, string description, IEnumerable<Option> options, Func<ParseResult, int> action)
    {
        var command = new Command(name, description);
        foreach (var option in options) command.Add(option);
        command.SetAction(action);
        return command;
    }

    /// <summary>An option with a description and a default.</summary>
    public static Option<T> Opt<T>(string name, string description, T defaultValue) =>
        new(name) { Description = description, DefaultValueFactory = _ => defaultValue };

    /// <summary>An option with a description, null when not given.</summary>
    public static Option<T> Opt<T>(string name, string description, bool required = false) =>
        new(name) { Description = description, Required = required };

    public static Option<Spelled<DeviceChoice>> DeviceOption() =>
        EnumOption("--device", "cpu or cuda (default: cuda when available, else cpu)", DeviceChoice.Auto, "device");

    /// <summary>
    /// An option spelling <typeparamref name="T"/> as configs do (<see cref="EnumNames"/>, any case); anything else is
    /// a usage error listing the spellings (<paramref name="what"/> names the value in it).
    /// </summary>
    public static Option<Spelled<T>> EnumOption<T>(string name, string description, T defaultValue, string what = "value") where T : struct, Enum
    {
        // One delegate as parser and default (called with no tokens when the option is absent).
        Func<ArgumentResult, Spelled<T>> parse = result => new(result.Tokens.Count == 0 ? defaultValue : Parse<T>(result, name, what));
        return Spell<T, Option<Spelled<T>>>(new(name) { Description = description, CustomParser = parse, DefaultValueFactory = parse });
    }

    /// <summary>As <see cref="EnumOption{T}"/>, with no default: null when the option is not given.</summary>
    public static Option<T?> OptionalEnumOption<T>(string name, string description, string what = "value") where T : struct, Enum =>
        Spell<T, Option<T?>>(new(name) { Description = description, CustomParser = result => Parse<T>(result, name, what) });

    /// <summary>Help shows the spellings (<c>--device &lt;auto|cpu|cuda&gt;</c>) and shells complete them.</summary>
    private static TOption Spell<T, TOption>(TOption option) where T : struct, Enum where TOption : Option
    {
        option.HelpName = string.Join("|", EnumNames.Names<T>());
        option.CompletionSources.Add(EnumNames.Names<T>().ToArray());
        return option;
    }

    private static T Parse<T>(ArgumentResult result, string name, string what) where T : struct, Enum
    {
        var text = result.Tokens.Count > 0 ? result.Tokens[^1].Value : "";
        if (EnumNames.TryParse<T>(text, out var value)) return value;
        result.AddError($"{name}: {EnumNames.Unknown<T>(text, what)}");
        return default;
    }

    /// <summary>The device --device names, set up (<see cref="Runtime.DevicePolicy.Choose"/>).</summary>
    public static Device ResolveDevice(DeviceChoice choice) =>
        Runtime.DevicePolicy.Choose(choice switch { DeviceChoice.Cuda => true, DeviceChoice.Cpu => false, _ => null });

    // The options of commands that read raw PyTorch weights, and the loading they imply.
    public static Option<bool> StrictOption() => Opt("--strict", "require every model key in raw weights (false: missing keys keep " +
        "their initial values, with a warning; unexpected or mis-shaped keys are errors either way)", true);

    public static Option<bool> AllowNonFiniteOption() =>
        Opt<bool>("--allow-nonfinite", "load weights holding NaN or infinite values (with a warning) instead of refusing them");

    /// <summary>The config the weights need (<see cref="ModelFile.ConfigFor"/>); warns of an unused --config.</summary>
    public static DdpmConfig? ConfigFor(string path, string? configPath) =>
        ModelFile.ConfigFor(path, configPath, warning => Console.Error.WriteLine($"warning: {warning}"));

    /// <summary>Warns of keys left at initial values (--strict false), loudly of NaN or ±∞ (allowed).</summary>
    public static void WarnAboutWeights(string path, IReadOnlyList<string> missing, IReadOnlyList<string> nonFinite)
    {
        if (missing.Count > 0)
            Console.Error.WriteLine($"warning: --strict false: {missing.Count} key(s) missing from the weights keep their initial values: " +
                string.Join(", ", missing));
        if (nonFinite.Count > 0)
            Console.Error.WriteLine($"WARNING: --allow-nonfinite: '{path}' has {nonFinite.Count} tensor(s) holding NaN or infinite values " +
                $"({string.Join(", ", nonFinite.Take(5))}{(nonFinite.Count > 5 ? ", …" : "")}); what it produces is not meaningful");
    }
}
