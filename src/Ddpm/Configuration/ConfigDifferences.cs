namespace Ddpm.Configuration;

/// <summary>Key-by-key comparison of two configs through <see cref="ConfigSchema"/> (what <c>train --resume</c> refuses
/// on).</summary>
public static class ConfigDifferences
{
    /// <summary>The run-length keys a resumed run may change: how long it goes on, not what it trains.</summary>
    public static IReadOnlySet<string> RunLengthKeys { get; } = new HashSet<string>(StringComparer.Ordinal)
    {
        "train_params.num_epochs", "train_params.max_steps", "train_params.keep_checkpoints",
    };

    /// <summary>
    /// Every schema key whose value differs between <paramref name="stored"/> and <paramref name="given"/>, except
    /// those in <paramref name="ignore"/>, as <c>section.key: stored → given</c>.
    /// </summary>
    public static IReadOnlyList<string> Between(DdpmConfig stored, DdpmConfig given, IReadOnlySet<string>? ignore = null)
    {
        var found = new List<string>();
        foreach (var key in ConfigSchema.Keys)
        {
            if (ignore is not null && ignore.Contains(key.Path)) continue;
            string? a = key.Format(stored), b = key.Format(given);
            if (a != b) found.Add($"{key.Path}: {a ?? "(unset)"} → {b ?? "(unset)"}");
        }
        return found;
    }
}
