using System.Reflection;
using System.Runtime.Serialization;
using System.Text;

namespace Ddpm.Configuration;

/// <summary>
/// The one way option values (enums) are spelled in configs, on the command line and in reports. A member's canonical
/// spelling is its name in lower kebab-case (<c>BetaTilde</c> → <c>beta-tilde</c>, <c>X0</c> → <c>x0</c>,
/// <c>Cifar10</c> → <c>cifar10</c>) unless <see cref="EnumMemberAttribute"/> gives it (<c>DpmSolver2M</c> →
/// <c>dpmpp-2m</c>); <see cref="AlsoSpelledAttribute"/> adds accepted aliases. Parsing ignores case.
/// </summary>
public static class EnumNames
{
    /// <summary>The canonical spelling of <paramref name="value"/>.</summary>
    public static string Name<T>(T value) where T : struct, Enum =>
        Spellings<T>.Canonical.TryGetValue(value, out var name) ? name : throw new ArgumentOutOfRangeException(nameof(value), value, null);

    /// <summary>The canonical spellings of every member of <typeparamref name="T"/>, in declaration order.</summary>
    public static IReadOnlyList<string> Names<T>() where T : struct, Enum => Spellings<T>.Names;

    /// <summary>Reads a canonical spelling or an alias, any case; false for anything else (including null).</summary>
    public static bool TryParse<T>(string? text, out T value) where T : struct, Enum =>
        Spellings<T>.Parse.TryGetValue(text?.Trim() ?? "", out value);

    /// <summary>The message for a spelling that is not one: <c>unknown schedule 'sigmoid' (known: linear,
    /// cosine)</c>.</summary>
    public static string Unknown<T>(string? text, string what) where T : struct, Enum =>
        $"unknown {what} '{text}' (known: {string.Join(", ", Names<T>())})";

    /// <summary>Lower kebab-case: a hyphen before each capital that follows a lower-case letter or a digit.</summary>
    internal static string KebabCase(string memberName)
    {
        var sb = new StringBuilder(memberName.Length + 4);
        for (int i = 0; i < memberName.Length; i++)
        {
            char c = memberName[i];
            if (char.IsUpper(c) && i > 0 && (char.IsLower(memberName[i - 1]) || char.IsDigit(memberName[i - 1]))) sb.Append('-');
            sb.Append(char.ToLowerInvariant(c));
        }
        return sb.ToString();
    }

    private static class Spellings<T> where T : struct, Enum
    {
        public static readonly Dictionary<T, string> Canonical = new();
        public static readonly Dictionary<string, T> Parse = new(StringComparer.OrdinalIgnoreCase);
        public static readonly string[] Names;

        static Spellings()
        {
            var names = new List<string>();
            foreach (var field in typeof(T).GetFields(BindingFlags.Public | BindingFlags.Static).OrderBy(f => f.MetadataToken))
            {
                var value = (T)field.GetValue(null)!;
                var name = field.GetCustomAttribute<EnumMemberAttribute>()?.Value ?? KebabCase(field.Name);
                Canonical[value] = name;
                names.Add(name);
                Parse.Add(name, value);
                foreach (var alias in field.GetCustomAttribute<AlsoSpelledAttribute>()?.Spellings ?? []) Parse.Add(alias, value);
            }
            Names = [.. names];
        }
    }
}
