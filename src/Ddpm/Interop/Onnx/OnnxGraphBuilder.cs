using System.Runtime.InteropServices;
using Ddpm.Interop.Onnx.Proto;
using Google.Protobuf;

namespace Ddpm.Interop.Onnx;

/// <summary>
/// Builds an ONNX graph node by node: graph inputs and outputs, float32 and int64 initializers (raw little-endian
/// bytes, as the format requires), nodes with their attributes, every value under a unique name. Shape constants are
/// shared.
/// </summary>
internal sealed class OnnxGraphBuilder
{
    private readonly GraphProto _graph;
    private readonly HashSet<string> _names = [];
    private readonly Dictionary<string, string> _int64Constants = [];

    public OnnxGraphBuilder(string name) => _graph = new GraphProto { Name = name };

    public int NodeCount => _graph.Node.Count;

    /// <summary>A name not used yet: <paramref name="hint"/>, else hint_1, hint_2, …</summary>
    public string Fresh(string hint)
    {
        var name = hint;
        for (int i = 1; !_names.Add(name); i++) name = $"{hint}_{i}";
        return name;
    }

    /// <summary>A graph input; each dimension is a fixed size (long) or a symbolic name (string, e.g.
    /// "batch").</summary>
    public string Input(string name, TensorProto.Types.DataType type, params object[] dims)
    {
        _graph.Input.Add(ValueInfo(Fresh(name), type, dims));
        return name;
    }

    /// <summary>Marks <paramref name="value"/> as a graph output with the given type and dimensions.</summary>
    public void Output(string value, TensorProto.Types.DataType type, params object[] dims) =>
        _graph.Output.Add(ValueInfo(value, type, dims));

    private static ValueInfoProto ValueInfo(string name, TensorProto.Types.DataType type, object[] dims)
    {
        var shape = new TensorShapeProto();
        foreach (var d in dims)
            shape.Dim.Add(d switch
            {
                string param => new TensorShapeProto.Types.Dimension { DimParam = param },
                long size => new TensorShapeProto.Types.Dimension { DimValue = size },
                int size => new TensorShapeProto.Types.Dimension { DimValue = size },
                _ => throw new ArgumentException($"a dimension is a size or a name, not {d.GetType().Name}"),
            });
        return new ValueInfoProto
        {
            Name = name,
            Type = new TypeProto { TensorType = new TypeProto.Types.Tensor { ElemType = (int)type, Shape = shape } },
        };
    }

    /// <summary>A float32 initializer of shape <paramref name="dims"/>.</summary>
    public string Floats(string name, ReadOnlySpan<float> values, params long[] dims)
    {
        CheckCount(name, values.Length, dims);
        var tensor = new TensorProto { Name = Fresh(name), DataType = (int)TensorProto.Types.DataType.Float };
        tensor.Dims.AddRange(dims);
        tensor.RawData = ByteString.CopyFrom(LittleEndian(values));
        _graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    /// <summary>An int64 initializer of shape <paramref name="dims"/>.</summary>
    public string Int64s(string name, ReadOnlySpan<long> values, params long[] dims)
    {
        CheckCount(name, values.Length, dims);
        var tensor = new TensorProto { Name = Fresh(name), DataType = (int)TensorProto.Types.DataType.Int64 };
        tensor.Dims.AddRange(dims);
        tensor.RawData = ByteString.CopyFrom(LittleEndian(values));
        _graph.Initializer.Add(tensor);
        return tensor.Name;
    }

    /// <summary>A 1-D int64 constant (a shape, axes, a permutation), shared by every node that uses the same
    /// values.</summary>
    public string Int64Vector(params long[] values)
    {
        var key = string.Join(",", values);
        if (!_int64Constants.TryGetValue(key, out var name))
        {
            name = Int64s("const_i64_" + key.Replace("-", "m").Replace(",", "_"), values, values.Length);
            _int64Constants[key] = name;
        }
        return name;
    }

    private static void CheckCount(string name, int count, long[] dims)
    {
        long expected = dims.Aggregate(1L, (a, b) => a * b);
        if (expected != count) throw new ArgumentException($"initializer {name}: {count} values for shape [{string.Join(", ", dims)}]");
    }

    private static byte[] LittleEndian<T>(ReadOnlySpan<T> values) where T : unmanaged
    {
        var bytes = MemoryMarshal.AsBytes(values).ToArray();
        if (!BitConverter.IsLittleEndian)
        {
            int size = Marshal.SizeOf<T>();
            for (int i = 0; i < bytes.Length; i += size) Array.Reverse(bytes, i, size);
        }
        return bytes;
    }

    /// <summary>Adds a node of <paramref name="op"/> (default domain) and returns its one output, named after <paramref
    /// name="output"/>.</summary>
    public string Node(string op, string[] inputs, string output, params AttributeProto[] attributes)
    {
        var name = Fresh(output);
        var node = new NodeProto { OpType = op, Name = name };
        node.Input.AddRange(inputs);
        node.Output.Add(name);
        node.Attribute.AddRange(attributes);
        _graph.Node.Add(node);
        return name;
    }

    public static AttributeProto Int(string name, long value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Int, I = value };

    public static AttributeProto Ints(string name, params long[] values)
    {
        var a = new AttributeProto { Name = name, Type = AttributeProto.Types.AttributeType.Ints };
        a.Ints.AddRange(values);
        return a;
    }

    public static AttributeProto Float(string name, float value) =>
        new() { Name = name, Type = AttributeProto.Types.AttributeType.Float, F = value };

    /// <summary>The model: IR version <paramref name="irVersion"/>, the default domain at <paramref name="opset"/>, and
    /// <paramref name="metadata"/>.</summary>
    public ModelProto Model(long irVersion, long opset, string producer, string producerVersion, string docString,
        IEnumerable<KeyValuePair<string, string>> metadata)
    {
        var model = new ModelProto
        {
            IrVersion = irVersion,
            ProducerName = producer,
            ProducerVersion = producerVersion,
            DocString = docString,
            Graph = _graph,
        };
        model.OpsetImport.Add(new OperatorSetIdProto { Domain = "", Version = opset });
        foreach (var (key, value) in metadata) model.MetadataProps.Add(new StringStringEntryProto { Key = key, Value = value });
        return model;
    }
}
