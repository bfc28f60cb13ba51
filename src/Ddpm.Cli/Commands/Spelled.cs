using Ddpm.Configuration;

namespace Ddpm.Cli.Commands;

/// <summary>
/// An enum option's value: converts to <typeparamref name="T"/> implicitly and prints as configs spell it
/// (<see cref="EnumNames"/>), so help shows <c>[default: auto]</c>, not the member name.
/// </summary>
internal readonly record struct Spelled<T>(T Value) where T : struct, Enum
{
    public static implicit operator T(Spelled<T> spelled) => spelled.Value;

    public override string ToString() => EnumNames.Name(Value);
}
