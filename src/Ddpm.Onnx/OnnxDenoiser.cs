using Microsoft.ML.OnnxRuntime;

namespace Ddpm.Onnx;

/// <summary>How ONNX Runtime runs the model.</summary>
public sealed record OnnxSessionSettings
{
    /// <summary>Graph optimisations (all by default; <see cref="GraphOptimizationLevel.ORT_DISABLE_ALL"/> runs the
    /// graph as written).</summary>
    public GraphOptimizationLevel Optimization { get; init; } = GraphOptimizationLevel.ORT_ENABLE_ALL;
    /// <summary>Threads inside one operator; 0 = ONNX Runtime's default (one per physical core).</summary>
    public int IntraOpThreads { get; init; }
}

/// <summary>
/// An exported DDPM U-Net in an ONNX Runtime session: f(x_t, t[, labels]) → the raw prediction, over flat float32
/// spans, and what its metadata says (<see cref="Info"/>). Not thread-safe for concurrent <see cref="Forward"/> calls.
/// </summary>
public sealed class OnnxDenoiser : IDisposable
{
    private readonly InferenceSession _session;
    private readonly string[] _inputNames;
    private static readonly string[] OutputNames = ["prediction"];

    public OnnxModelInfo Info { get; }

    private OnnxDenoiser(InferenceSession session, OnnxModelInfo info)
    {
        _session = session;
        Info = info;
        _inputNames = info.IsConditional ? ["x", "t", "labels"] : ["x", "t"];
    }

    /// <summary>Opens <paramref name="path"/> (written by <c>ddpm export --to model.onnx</c>).</summary>
    /// <exception cref="FileNotFoundException">No such file.</exception>
    /// <exception cref="InvalidDataException">Not such a model (what is wrong is named).</exception>
    public static OnnxDenoiser Load(string path, OnnxSessionSettings? settings = null)
    {
        if (!File.Exists(path)) throw new FileNotFoundException($"ONNX model '{path}' not found", path);
        settings ??= new OnnxSessionSettings();
        using var options = new SessionOptions { GraphOptimizationLevel = settings.Optimization };
        if (settings.IntraOpThreads > 0) options.IntraOpNumThreads = settings.IntraOpThreads;
        InferenceSession session;
        try { session = new InferenceSession(path, options); }
        catch (OnnxRuntimeException e) { throw new InvalidDataException($"'{path}' is not a model ONNX Runtime can open: {e.Message}", e); }
        try
        {
            var info = OnnxModelInfo.FromMetadata(session.ModelMetadata.CustomMetadataMap, $"'{path}'");
            var expected = info.IsConditional ? new[] { "x", "t", "labels" } : ["x", "t"];
            var inputs = session.InputMetadata.Keys.ToArray();
            if (!inputs.Order().SequenceEqual(expected.Order()))
                throw new InvalidDataException($"'{path}': inputs are {string.Join(", ", inputs)}; expected {string.Join(", ", expected)}");
            if (!session.OutputMetadata.ContainsKey(OutputNames[0]))
                throw new InvalidDataException($"'{path}': no output named '{OutputNames[0]}'");
            return new OnnxDenoiser(session, info);
        }
        catch
        {
            session.Dispose();
            throw;
        }
    }

    /// <summary>
    /// The network's output for a batch: <paramref name="x"/> [B·C·H·W], <paramref name="t"/> [B] timesteps,
    /// <paramref name="labels"/> [B] for a class-conditional model (its null label for "no class"; empty otherwise),
    /// into
    /// <paramref name="output"/> [B·C·H·W].
    /// </summary>
    public void Forward(ReadOnlyMemory<float> x, ReadOnlyMemory<long> t, ReadOnlyMemory<long> labels, Memory<float> output)
    {
        int b = t.Length, size = Info.ImageSize;
        if (b < 1) throw new ArgumentException("a batch needs at least one timestep", nameof(t));
        if (x.Length != b * size) throw new ArgumentException($"x holds {x.Length} values; {b} images need {b * size}", nameof(x));
        if (output.Length != x.Length) throw new ArgumentException($"output holds {output.Length} values; expected {x.Length}", nameof(output));
        if (Info.IsConditional ? labels.Length != b : labels.Length != 0)
            throw new ArgumentException(Info.IsConditional ? $"labels: {labels.Length} given for {b} images" : "this model is unconditional and takes no labels", nameof(labels));
        long[] shape = [b, Info.Channels, Info.Height, Info.Width];
        var info = OrtMemoryInfo.DefaultInstance;
        // The inputs are only read: ONNX Runtime wraps the caller's memory without copying.
        using var xValue = OrtValue.CreateTensorValueFromMemory(info, System.Runtime.InteropServices.MemoryMarshal.AsMemory(x), shape);
        using var tValue = OrtValue.CreateTensorValueFromMemory(info, System.Runtime.InteropServices.MemoryMarshal.AsMemory(t), [b]);
        using var yValue = Info.IsConditional
            ? OrtValue.CreateTensorValueFromMemory(info, System.Runtime.InteropServices.MemoryMarshal.AsMemory(labels), [b]) : null;
        using var outValue = OrtValue.CreateTensorValueFromMemory(info, output, shape);
        var inputs = yValue is null ? new[] { xValue, tValue } : [xValue, tValue, yValue];
        using var runOptions = new RunOptions();
        _session.Run(runOptions, _inputNames, inputs, OutputNames, [outValue]);
    }

    public void Dispose() => _session.Dispose();
}
