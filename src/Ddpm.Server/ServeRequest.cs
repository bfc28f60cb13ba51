using System.Text.Json;
using System.Text.Json.Serialization;
using Ddpm.Configuration;
using Ddpm.Diffusion;
using Ddpm.Sampling;

namespace Ddpm.Server;

/// <summary>A validated generation request: which checkpoint, how to sample, how many images, which class.</summary>
public sealed record ServeRequest(CheckpointInfo Checkpoint, SamplerOptions Sampler, int Steps, int Count, int Rows, long Seed,
    int? Label, double Guidance, bool UseEma)
{
    /// <summary>Network evaluations the request costs: images × steps, twice that with guidance (one batched forward of both halves).</summary>
    public long ImageSteps => (long)Count * Steps * (Label is not null && Guidance != 0 ? 2 : 1);
}

/// <summary>The JSON body of <c>POST /api/generate</c>, as the page sends it. Unknown members are refused.</summary>
[JsonUnmappedMemberHandling(JsonUnmappedMemberHandling.Disallow)]
public sealed record ServeRequestBody
{
    public string? Checkpoint { get; init; }
    public string? Sampler { get; init; }
    public int? Steps { get; init; }
    public double? Eta { get; init; }
    public string? Spacing { get; init; }
    public string? Sigma { get; init; }
    public bool? ClipX0 { get; init; }
    public long? Seed { get; init; }
    public int? Count { get; init; }
    public int? Rows { get; init; }
    [JsonPropertyName("class")] public int? Class { get; init; }
    public double? Guidance { get; init; }
    public bool? Ema { get; init; }
}

/// <summary>A request the server refuses, with one message naming the field and the problem (HTTP 400).</summary>
public sealed class BadRequestException(string message) : Exception(message);

/// <summary>Turns a request body into a <see cref="ServeRequest"/>, checking it as <c>ddpm sample</c> checks its options.</summary>
public static class ServeRequestParser
{
    /// <summary>Most bytes a request body may have.</summary>
    public const int MaxBodyBytes = 16 * 1024;

    public static JsonSerializerOptions Json { get; } = new(JsonSerializerDefaults.Web);

    public static ServeRequest Parse(ReadOnlySpan<byte> json, RunsCatalog catalog, GenerationLimits limits)
    {
        ServeRequestBody? body;
        try { body = JsonSerializer.Deserialize<ServeRequestBody>(json, Json); }
        catch (JsonException e) { throw new BadRequestException($"the body is not a valid request: {e.Message}"); }
        if (body is null) throw new BadRequestException("the body is empty: send a JSON object");
        return Validate(body, catalog, limits);
    }

    public static ServeRequest Validate(ServeRequestBody body, RunsCatalog catalog, GenerationLimits limits)
    {
        if (string.IsNullOrEmpty(body.Checkpoint)) throw new BadRequestException("checkpoint: required (an id from GET /api/runs)");
        var checkpoint = catalog.FindCheckpoint(body.Checkpoint)
            ?? throw new BadRequestException($"checkpoint: no checkpoint has the id '{Truncate(body.Checkpoint)}'");
        var model = checkpoint.Model;

        var kind = ParseEnum<SamplerKind>("sampler", body.Sampler, SamplerKind.Ddpm);
        var options = new SamplerOptions
        {
            Kind = kind,
            Steps = body.Steps,
            Eta = body.Eta ?? 0,
            Spacing = body.Spacing is null ? null : ParseEnum<SpacingKind>("spacing", body.Spacing, SpacingKind.Uniform), // null: the sampler's default
            Variance = ParseEnum<VarianceKind>("sigma", body.Sigma, VarianceKind.BetaTilde),
            ClipX0 = body.ClipX0 ?? false,
        };
        if (body.Steps is { } s && (s < 1 || s > model.Timesteps))
            throw new BadRequestException($"steps: must lie in 1..{model.Timesteps} (the model's T), got {s}");
        if (body.Eta is { } eta && !(eta >= 0 && eta <= 1)) throw new BadRequestException($"eta: must lie in [0, 1], got {eta}");
        if (body.Eta is > 0 && kind != SamplerKind.Ddim) throw new BadRequestException("eta: applies to the ddim sampler only");
        try
        {
            // The sampler's own checks (as ddpm sample makes them); any tensors it builds are released at once.
            using var scope = TorchSharp.torch.NewDisposeScope();
            _ = options.Create(NoiseSchedule.FromOptions(checkpoint.Config.Diffusion));
        }
        catch (ArgumentException e) { throw new BadRequestException($"sampler: {e.Message}"); }
        int steps = body.Steps ?? SamplerOptions.DefaultSteps(kind, model.Timesteps);

        int count = body.Count ?? Math.Min(model.DefaultImages, limits.MaxImages);
        if (count < 1 || count > limits.MaxImages) throw new BadRequestException($"count: must lie in 1..{limits.MaxImages}, got {count}");
        int rows = body.Rows ?? (int)Math.Ceiling(Math.Sqrt(count));
        if (rows < 1 || rows > count) throw new BadRequestException($"rows: images per row must lie in 1..{count} (the count), got {rows}");

        double guidance = body.Guidance ?? 0;
        if (!double.IsFinite(guidance) || guidance < 0 || guidance > limits.MaxGuidance)
            throw new BadRequestException($"guidance: must be a number in [0, {limits.MaxGuidance}], got {guidance}");
        // Classes and guidance as the library checks them for ddpm sample.
        try
        {
            new GenerationRequest { Count = count, Labels = body.Class is { } y ? Enumerable.Repeat(y, count).ToArray() : null, Guidance = guidance }
                .Validate(checkpoint.Config.Model);
        }
        catch (ArgumentException e) { throw new BadRequestException(e.Message); }
        bool useEma = body.Ema ?? model.HasEma;
        if (useEma && !model.HasEma) throw new BadRequestException("ema: the checkpoint has no EMA weights");

        var request = new ServeRequest(checkpoint, options, steps, count, rows, body.Seed ?? 0, body.Class, guidance, useEma);
        if (request.ImageSteps > limits.MaxImageSteps)
            throw new BadRequestException($"count × steps{(request.ImageSteps != (long)count * steps ? " × 2 (guidance)" : "")} = {request.ImageSteps} " +
                $"exceeds this server's limit of {limits.MaxImageSteps}: ask for fewer images or steps");
        return request;
    }

    private static T ParseEnum<T>(string field, string? value, T fallback) where T : struct, Enum
    {
        if (value is null) return fallback;
        return EnumNames.TryParse<T>(value, out var v) ? v : throw new BadRequestException($"{field}: {EnumNames.Unknown<T>(Truncate(value), "value")}");
    }

    private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
