using System.Text.Json;
using System.Text.Json.Serialization;

namespace Ddpm.Evaluation;

/// <summary>The JSON conventions of every evaluation file: indented, snake_case keys, enums as strings.</summary>
public static class EvaluationJson
{
    public static JsonSerializerOptions Options { get; } = new()
    {
        WriteIndented = true,
        PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
        DefaultIgnoreCondition = JsonIgnoreCondition.Never,
        NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        Converters = { new JsonStringEnumConverter(JsonNamingPolicy.SnakeCaseLower) },
    };
}
