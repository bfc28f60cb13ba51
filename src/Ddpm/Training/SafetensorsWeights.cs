using System.Buffers.Binary;
using System.Text.Json;
using TorchSharp.PyBridge;
using static TorchSharp.torch;

namespace Ddpm.Training;

/// <summary>
/// Loads safetensors bytes into a module after checking the container itself: an 8-byte little-endian header length
/// that fits the file, a JSON header whose tensors have known dtypes, non-negative shapes and data offsets inside the
/// file matching their shapes, no two tensors sharing bytes, no name given twice, JSON nested at most
/// <see cref="MaxHeaderDepth"/> deep. TorchSharp.PyBridge trusts those fields (a huge header length is allocated as
/// asked), so they are checked first; anything PyBridge still rejects becomes a <see cref="CheckpointException"/>.
/// </summary>
public static class SafetensorsWeights
{
    /// <summary>Headers above this size are refused (PyTorch's own writer caps them at 100 MB).</summary>
    public const long MaxHeaderBytes = 100_000_000;
    /// <summary>A header is an object of tensor objects holding a shape list: three levels (metadata two).</summary>
    public const int MaxHeaderDepth = 8;

    private static readonly JsonDocumentOptions HeaderJson = new() { AllowDuplicateProperties = false, MaxDepth = MaxHeaderDepth };

    private static readonly Dictionary<string, int> DtypeBytes = new()
    {
        ["F64"] = 8, ["F32"] = 4, ["F16"] = 2, ["BF16"] = 2, ["I64"] = 8, ["I32"] = 4, ["I16"] = 2, ["I8"] = 1, ["U8"] = 1, ["BOOL"] = 1,
    };

    /// <summary>Validates <paramref name="bytes"/> and loads them into <paramref name="module"/> (strict: every key
    /// must match).</summary>
    public static void LoadInto(nn.Module module, byte[] bytes, string path, bool strict = true)
    {
        Validate(bytes, path);
        try
        {
            using var stream = new MemoryStream(bytes, writable: false);
            module.load_safetensors(stream, strict: strict);
        }
        catch (Exception e) when (e is not CheckpointException)
        {
            throw new CheckpointException(path, $"its safetensors weights do not fit the model: {WithoutBacktrace(e.Message)}", e);
        }
    }

    /// <summary>Throws <see cref="CheckpointException"/> unless the bytes are a well-formed safetensors
    /// container.</summary>
    public static void Validate(byte[] bytes, string path)
    {
        if (bytes.Length < 8) throw new CheckpointException(path, "safetensors data is shorter than its 8-byte header length");
        ulong headerLength = BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        if (headerLength > MaxHeaderBytes || headerLength > (ulong)(bytes.Length - 8))
            throw new CheckpointException(path, $"safetensors header declares {headerLength:N0} bytes but the data holds {bytes.Length - 8:N0}");
        long dataLength = bytes.Length - 8 - (long)headerLength;
        JsonDocument header;
        try { header = JsonDocument.Parse(bytes.AsMemory(8, (int)headerLength), HeaderJson); }
        catch (JsonException e) { throw new CheckpointException(path, $"safetensors header is not valid JSON: {e.Message}", e); }
        using (header)
        try
        {
            if (header.RootElement.ValueKind != JsonValueKind.Object) throw new CheckpointException(path, "safetensors header is not a JSON object");
            var spans = new List<(long Begin, long End, string Name)>();
            foreach (var tensor in header.RootElement.EnumerateObject())
            {
                if (tensor.Name == "__metadata__") continue;
                var (begin, end) = Check(tensor, dataLength, path);
                if (end > begin) spans.Add((begin, end, tensor.Name));
            }
            spans.Sort((a, b) => a.Begin.CompareTo(b.Begin));
            for (int i = 1; i < spans.Count; i++)
                if (spans[i].Begin < spans[i - 1].End)
                    throw new CheckpointException(path, $"safetensors tensors '{spans[i - 1].Name}' [{spans[i - 1].Begin}, {spans[i - 1].End}) and " +
                        $"'{spans[i].Name}' [{spans[i].Begin}, {spans[i].End}) share data bytes (overlapping data_offsets)");
        }
        catch (InvalidOperationException e) // e.g. a name that is not valid UTF-8
        {
            throw new CheckpointException(path, $"safetensors header is not valid JSON text: {e.Message}", e);
        }
    }

    /// <summary>libtorch's message without its C++ backtrace ("Exception raised from … frame #0 …"): the first line
    /// only.</summary>
    internal static string WithoutBacktrace(string message)
    {
        int raised = message.IndexOf("Exception raised from ", StringComparison.Ordinal);
        var text = raised >= 0 ? message[..raised] : message;
        int newline = text.IndexOf('\n');
        return (newline >= 0 ? text[..newline] : text).Trim();
    }

    private static (long Begin, long End) Check(JsonProperty tensor, long dataLength, string path)
    {
        CheckpointException Bad(string what) => new(path, $"safetensors tensor '{tensor.Name}': {what}");
        var t = tensor.Value;
        if (t.ValueKind != JsonValueKind.Object) throw Bad("is not a JSON object");
        if (!t.TryGetProperty("dtype", out var dtype) || dtype.ValueKind != JsonValueKind.String || !DtypeBytes.TryGetValue(dtype.GetString()!, out int size))
            throw Bad("has no known dtype");
        if (!t.TryGetProperty("shape", out var shape) || shape.ValueKind != JsonValueKind.Array) throw Bad("has no shape");
        long count = 1;
        foreach (var d in shape.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long n) || n < 0) throw Bad("has a shape entry that is not a non-negative integer");
            try { count = checked(count * n); }
            catch (OverflowException) { throw Bad("has a shape too large to address"); }
        }
        if (!t.TryGetProperty("data_offsets", out var offsets) || offsets.ValueKind != JsonValueKind.Array || offsets.GetArrayLength() != 2
            || !offsets[0].TryGetInt64(out long begin) || !offsets[1].TryGetInt64(out long end))
            throw Bad("has no [begin, end] data_offsets");
        if (begin < 0 || end < begin || end > dataLength) throw Bad($"data_offsets [{begin}, {end}] lie outside the {dataLength:N0} data bytes");
        if (count > dataLength || (end - begin) != count * size) throw Bad($"data_offsets span {end - begin:N0} bytes but the shape needs {count:N0} × {size}");
        return (begin, end);
    }
}
