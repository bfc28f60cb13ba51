namespace Ddpm.Configuration;

/// <summary>
/// Further spellings an option value is accepted under, beside its canonical one (<see cref="EnumNames"/>), e.g.
/// <c>eps</c> for <see cref="PredictionTarget.Epsilon"/>. Configs and the command line accept them; nothing writes
/// them.
/// </summary>
[AttributeUsage(AttributeTargets.Field)]
public sealed class AlsoSpelledAttribute(params string[] spellings) : Attribute
{
    public IReadOnlyList<string> Spellings { get; } = spellings;
}
