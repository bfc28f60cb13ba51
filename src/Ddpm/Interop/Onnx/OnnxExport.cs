using System.Globalization;
using System.Text.Json;
using Ddpm.Configuration;
using Ddpm.Diffusion;
using Ddpm.IO;
using Ddpm.Models;
using Google.Protobuf;

namespace Ddpm.Interop.Onnx;

/// <summary>What <see cref="OnnxExport.Write"/> wrote.</summary>
/// <param name="Bytes">Size of the .onnx file.</param>
/// <param name="Nodes">Operators in the graph.</param>
/// <param name="Parameters">The U-Net's parameter count (all of them are initializers of the graph).</param>
public sealed record OnnxExportResult(string Path, long Bytes, int Nodes, long Parameters);

/// <summary>
/// Writes a U-Net as an ONNX model (opset <see cref="Opset"/>, IR version <see cref="IrVersion"/>) that ONNX Runtime
/// (native 1.30+ and onnxruntime-web 1.30+) and any other ONNX runtime can run without libtorch. Inputs: x_t [batch, C,
/// H, W] float32, t [batch] int64 and, only for a class-conditional model, labels [batch] int64 (num_classes is the
/// null label ∅ used for unconditional and guided sampling); output: the network's raw prediction (ε, x_0 or v). The
/// metadata_props (<see cref="Keys"/>) carry what a sampler needs: the prediction type, the β's, the image shape, the
/// classes.
/// </summary>
/// <remarks>
/// The file is serialised by Google.Protobuf (Google's maintained protobuf runtime) from C# that Grpc.Tools' protoc
/// generates at build time out of <c>onnx.proto</c> in this folder, a minimal subset of ONNX's schema with its field
/// numbers. Generated code gets the wire format right by construction (packed repeated fields, proto2 presence, nested
/// lengths), which hand-written CodedOutputStream calls would have to get right field by field; the runtime package is
/// small and has no native parts.
/// </remarks>
public static class OnnxExport
{
    /// <summary>Opset 17: run by ONNX Runtime 1.30 (web) and 1.32, and the newest that python3-onnx 1.12's checker
    /// knows.</summary>
    public const long Opset = 17;
    /// <summary>IR version 8, the one that goes with opset 17.</summary>
    public const long IrVersion = 8;
    /// <summary>The version of this file layout (inputs, outputs, metadata keys); a reader refuses others.</summary>
    public const int FormatVersion = 1;

    public const string InputName = "x", TimestepName = "t", LabelsName = "labels", OutputName = "prediction";

    /// <summary>The metadata_props keys (also the keys of the JSON beside a web export).</summary>
    public static class Keys
    {
        /// <summary><see cref="FormatVersion"/>.</summary>
        public const string Format = "ddpm.format";
        /// <summary>What the output is: "epsilon", "x0" or "v".</summary>
        public const string Prediction = "ddpm.prediction";
        /// <summary>β_0..β_{T−1}, comma-separated, each a round-trip float64.</summary>
        public const string Betas = "ddpm.betas";
        /// <summary>"C,H,W" of one image.</summary>
        public const string ImageShape = "ddpm.image_shape";
        /// <summary>Number of classes (0 = unconditional; then the graph has no labels input).</summary>
        public const string NumClasses = "ddpm.num_classes";
        /// <summary>The label that means "no class" (∅ = num_classes), for unconditional and guided sampling.</summary>
        public const string NullLabel = "ddpm.null_label";
        /// <summary>The whole config as YAML, for reference.</summary>
        public const string Config = "ddpm.config";
        /// <summary>Where the weights came from (free text, e.g. the checkpoint and whether its EMA weights were
        /// used).</summary>
        public const string Source = "ddpm.source";
    }

    /// <summary>The ONNX model of <paramref name="model"/> (its current weights, float32) under <paramref
    /// name="config"/>'s diffusion process.</summary>
    public static byte[] ToBytes(UNet model, DdpmConfig config, string? source = null) => Build(model, config, source, out _).ToByteArray();

    /// <summary>Writes the ONNX model to <paramref name="path"/> atomically (a failed write leaves whatever was
    /// there).</summary>
    public static OnnxExportResult Write(UNet model, DdpmConfig config, string path, string? source = null)
    {
        var proto = Build(model, config, source, out int nodes);
        AtomicFile.Write(path, proto.WriteTo);
        return new OnnxExportResult(path, new FileInfo(path).Length, nodes, model.ParameterCount());
    }

    private static Proto.ModelProto Build(UNet model, DdpmConfig config, string? source, out int nodes)
    {
        config.Diffusion.Validate();
        var weights = StateDictIo.Export(model);
        try
        {
            var builder = new OnnxGraphBuilder("ddpm_unet");
            UNetOnnxGraph.Build(builder, weights, model.Options);
            nodes = builder.NodeCount;
            var version = typeof(OnnxExport).Assembly.GetName().Version?.ToString(3) ?? "0";
            return builder.Model(IrVersion, Opset, "ddpm", version,
                "DDPM U-Net (Ho et al. 2020): x_t, t[, labels] -> the network's raw prediction; see metadata_props ddpm.*",
                Metadata(config with { Model = model.Options }, source));
        }
        finally
        {
            foreach (var t in weights.Values) t.Dispose();
        }
    }

    /// <summary>The metadata a sampler needs, under <see cref="Keys"/>, in a fixed order.</summary>
    public static IReadOnlyList<KeyValuePair<string, string>> Metadata(DdpmConfig config, string? source = null)
    {
        var inv = CultureInfo.InvariantCulture;
        var schedule = NoiseSchedule.FromOptions(config.Diffusion);
        var m = config.Model;
        var list = new List<KeyValuePair<string, string>>
        {
            new(Keys.Format, FormatVersion.ToString(inv)),
            new(Keys.Prediction, EnumNames.Name(config.Diffusion.Prediction)),
            new(Keys.Betas, string.Join(",", schedule.Betas.Select(b => b.ToString("R", inv)))),
            new(Keys.ImageShape, $"{m.ImChannels},{m.ImSize},{m.ImSize}"),
            new(Keys.NumClasses, m.NumClasses.ToString(inv)),
            new(Keys.NullLabel, m.NumClasses.ToString(inv)),
            new(Keys.Config, config.ToYaml()),
        };
        if (source is not null) list.Add(new(Keys.Source, source));
        return list;
    }

    /// <summary>The same metadata as one JSON object (what a web page reads: onnxruntime-web does not expose
    /// metadata_props).</summary>
    public static string MetadataJson(DdpmConfig config, string? source = null) =>
        JsonSerializer.Serialize(Metadata(config, source).ToDictionary(p => p.Key, p => p.Value), new JsonSerializerOptions { WriteIndented = true });
}
