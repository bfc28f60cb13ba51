using System.Text.Json;
using System.Text.Json.Serialization;
using Ddpm.Configuration;
using Ddpm.Data;
using Ddpm.Diffusion;
using Ddpm.Imaging;
using Ddpm.Runtime;
using Ddpm.Sampling;

namespace Ddpm.Server;

/// <summary>A validated generation request: checkpoint, sampler, images, class and edit.</summary>
public sealed record ServeRequest(CheckpointInfo Checkpoint, SamplerOptions Sampler, int Steps, int Count, int Rows, long Seed,
    int? Label, double Guidance, bool UseEma)
{
    /// <summary>What the page edits (inpaint, clean up, interpolate); null samples from noise.</summary>
    public ServeEdit? Edit { get; init; }

    /// <summary>
    /// Network evaluations the request costs at most: images × model calls, twice that with guidance (one batched
    /// forward of both halves), three times between two guided classes.
    /// </summary>
    public long ImageSteps
    {
        get
        {
            long calls = Edit is { Mode: ServeEdit.Inpaint } e
                ? RePaintSchedule.ModelCalls(Steps, e.Jump, e.Resample) : Steps;
            int forwards = Label is not null && Guidance != 0 ? 2 : 1;
            if (Edit?.ToClass is { } b && Label is { } a && a != b) forwards++;
            return Count * calls * forwards;
        }
    }

    /// <summary>The library's request, as <c>ddpm sample</c>, <c>inpaint</c> and <c>interpolate</c> build it.</summary>
    public GenerationRequest ToGenerationRequest()
    {
        bool perImage = Edit is not { Mode: ServeEdit.Interpolate };
        var request = new GenerationRequest
        {
            Count = Count,
            Seed = Seed,
            Sampler = Sampler,
            Labels = Label is { } y && perImage ? Enumerable.Repeat(y, Count).ToArray() : null,
            Guidance = Guidance, // batches within the generator's memory budget, as ddpm sample's
        };
        return Edit switch
        {
            null => request,
            { Mode: ServeEdit.Inpaint } e => request with
            {
                Inpainting = new Inpainting
                {
                    Known = e.Image!, Mask = e.Mask!, Resamplings = e.Resample, JumpLength = e.Jump,
                },
            },
            { Mode: ServeEdit.CleanUp } e => request with
            {
                ImageToImage = new ImageToImage { Images = e.Image!, Strength = e.Strength },
            },
            { Mode: ServeEdit.Interpolate } e => request with
            {
                Interpolation = new Interpolation
                {
                    Frames = Count, ToSeed = e.ToSeed, FromClass = Label,
                    ToClass = Label is null ? null : e.ToClass ?? Label,
                },
            },
            _ => throw new ArgumentException($"mode: unknown edit '{Edit.Mode}'"),
        };
    }
}

/// <summary>
/// An edit the page asks for: <see cref="Inpaint"/> (complete what the mask leaves black), <see cref="CleanUp"/>
/// (image-to-image at a strength) or <see cref="Interpolate"/> (frames from the seed to <see cref="ToSeed"/>). The
/// images are decoded at the model's size; the library's plan checks the rest.
/// </summary>
public sealed record ServeEdit(string Mode)
{
    public const string Inpaint = "inpaint", CleanUp = "img2img", Interpolate = "interpolate";

    /// <summary>The drawn image [1, C, H, W] in [−1, 1] (inpaint, img2img).</summary>
    public TorchSharp.torch.Tensor? Image { get; init; }
    /// <summary>The mask [1, 1, H, W], 1 = keep (inpaint).</summary>
    public TorchSharp.torch.Tensor? Mask { get; init; }
    public double Strength { get; init; } = 0.5;
    public int Resample { get; init; } = 1;
    public int Jump { get; init; } = 10;
    public long ToSeed { get; init; }
    public int? ToClass { get; init; }
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
    /// <summary>"sample" (default), "inpaint", "img2img" or "interpolate".</summary>
    public string? Mode { get; init; }
    /// <summary>The drawn image as a PNG data URL at the model's size (inpaint, img2img).</summary>
    public string? Image { get; init; }
    /// <summary>The mask as a PNG data URL, white = keep, black = complete (inpaint).</summary>
    public string? Mask { get; init; }
    public double? Strength { get; init; }
    public int? Resample { get; init; }
    public int? Jump { get; init; }
    public long? ToSeed { get; init; }
    public int? ToClass { get; init; }
    /// <summary>Frames of an interpolation (its image count).</summary>
    public int? Frames { get; init; }
}

/// <summary>A request the server refuses, with one message naming the field and the problem (HTTP 400).</summary>
public sealed class BadRequestException(string message) : Exception(message);

/// <summary>Turns a request body into a <see cref="ServeRequest"/>, checking it as <c>ddpm sample</c> checks its
/// options.</summary>
public static class ServeRequestParser
{
    /// <summary>Most bytes a request body may have (room for two drawn PNGs as data URLs).</summary>
    public const int MaxBodyBytes = 128 * 1024;

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

        var edit = Edit(body, model);
        bool path = edit?.Mode == ServeEdit.Interpolate; // an interpolation's images are its frames, in one row
        int count = path ? body.Frames ?? 8 : body.Count ?? Math.Min(model.DefaultImages, limits.MaxImages);
        if (count < 1 || count > limits.MaxImages)
            throw new BadRequestException($"{(path ? "frames" : "count")}: must lie in 1..{limits.MaxImages}, " +
                $"got {count}");
        int rows = body.Rows ?? (path ? count : (int)Math.Ceiling(Math.Sqrt(count)));
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
        if (model.Distilled is { } distilled)
        {
            // A distilled student samples its own grid (as ImageGenerator.Resolve runs it): refuse what it was not
            // trained for.
            try { options = distilled.SamplerFor(options, body.Class is not null, guidance); }
            catch (ArgumentException e)
            {
                var field = e.Message.Contains("guidance") ? "guidance" : "sampler";
                throw new BadRequestException($"{field}: {e.Message}");
            }
            steps = distilled.Steps;
        }
        bool useEma = body.Ema ?? model.HasEma;
        if (useEma && !model.HasEma) throw new BadRequestException("ema: the checkpoint has no EMA weights");

        var seed = body.Seed ?? 0;
        var request = new ServeRequest(checkpoint, options, steps, count, rows, seed, body.Class, guidance, useEma)
        {
            Edit = edit,
        };
        if (request.ImageSteps > limits.MaxImageSteps)
            throw new BadRequestException($"count × steps{(request.ImageSteps != (long)count * steps ? " × 2 (guidance)" : "")} = {request.ImageSteps} " +
                $"exceeds this server's limit of {limits.MaxImageSteps}: ask for fewer images or steps");
        return request;
    }

    /// <summary>
    /// The edit a body asks for, with its images decoded at the model's size (<see cref="EditImages"/>, as the CLI
    /// reads files); what the values mean for the model (strength range, a mask that keeps all or nothing, resampling
    /// with the sampler) is left to the library's plan, which the server runs before it answers.
    /// </summary>
    private static ServeEdit? Edit(ServeRequestBody body, ModelSummary model)
    {
        var mode = body.Mode ?? "sample";
        if (mode is not ("sample" or ServeEdit.Inpaint or ServeEdit.CleanUp or ServeEdit.Interpolate))
            throw new BadRequestException($"mode: must be sample, {ServeEdit.Inpaint}, {ServeEdit.CleanUp} or " +
                $"{ServeEdit.Interpolate}, got '{Truncate(mode)}'");
        void Only(string field, object? value, params string[] modes)
        {
            if (value is not null && !modes.Contains(mode))
                throw new BadRequestException($"{field}: applies to mode {string.Join(" or ", modes)}, not {mode}");
        }
        Only("image", body.Image, ServeEdit.Inpaint, ServeEdit.CleanUp);
        Only("mask", body.Mask, ServeEdit.Inpaint);
        Only("resample", body.Resample, ServeEdit.Inpaint);
        Only("jump", body.Jump, ServeEdit.Inpaint);
        Only("strength", body.Strength, ServeEdit.CleanUp);
        Only("toSeed", body.ToSeed, ServeEdit.Interpolate);
        Only("toClass", body.ToClass, ServeEdit.Interpolate);
        Only("frames", body.Frames, ServeEdit.Interpolate);
        if (mode == ServeEdit.Interpolate && body.Count is not null)
            throw new BadRequestException("count: an interpolation has frames, not a count");
        if (body.ToClass is not null && body.Class is null)
            throw new BadRequestException("toClass: needs class (the start's)");
        return mode switch
        {
            ServeEdit.Inpaint => new ServeEdit(mode)
            {
                Image = Png("image", body.Image, model, mask: false),
                Mask = Png("mask", body.Mask, model, mask: true),
                Resample = body.Resample ?? 1,
                Jump = body.Jump ?? 10,
            },
            ServeEdit.CleanUp => new ServeEdit(mode)
            {
                Image = Png("image", body.Image, model, mask: false),
                Strength = body.Strength ?? 0.5,
            },
            ServeEdit.Interpolate => new ServeEdit(mode) { ToSeed = body.ToSeed ?? 1, ToClass = body.ToClass },
            _ => null,
        };
    }

    /// <summary>A PNG data URL decoded at the model's size: an image, or a mask (white = keep).</summary>
    private static TorchSharp.torch.Tensor Png(string field, string? url, ModelSummary model, bool mask)
    {
        const string prefix = "data:image/png;base64,";
        if (url is null) throw new BadRequestException($"{field}: required (a {prefix}… URL)");
        if (!url.StartsWith(prefix, StringComparison.Ordinal))
            throw new BadRequestException($"{field}: must be a {prefix}… URL");
        byte[] png;
        try { png = Convert.FromBase64String(url[prefix.Length..]); }
        catch (FormatException) { throw new BadRequestException($"{field}: the data URL is not valid base64"); }
        try
        {
            return mask ? EditImages.DecodeMask(png, field, model.ImageSize)
                : EditImages.DecodeImage(png, field, model.Channels, model.ImageSize);
        }
        catch (DataException e) { throw new BadRequestException(e.Message); }
    }

    private static T ParseEnum<T>(string field, string? value, T fallback) where T : struct, Enum
    {
        if (value is null) return fallback;
        return EnumNames.TryParse<T>(value, out var v) ? v : throw new BadRequestException($"{field}: {EnumNames.Unknown<T>(Truncate(value), "value")}");
    }

    private static string Truncate(string s) => s.Length <= 40 ? s : s[..40] + "…";
}
