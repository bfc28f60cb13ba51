using System.Globalization;
using System.Text;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Ddpm.Configuration;

/// <summary>
/// A whole experiment in the reference's YAML schema (<c>dataset_params</c>, <c>diffusion_params</c>,
/// <c>model_params</c>, <c>train_params</c>), so the reference's <c>config/default.yaml</c> loads unchanged.
/// Missing keys take the reference's defaults; unknown keys are errors (a typo must not be silently ignored).
/// </summary>
public sealed record DdpmConfig
{
    public DatasetOptions Dataset { get; init; } = new();
    public DiffusionOptions Diffusion { get; init; } = new();
    public UNetOptions Model { get; init; } = new();
    public TrainOptions Train { get; init; } = new();

    /// <summary>Validates every section; throws <see cref="ConfigException"/> naming the key.</summary>
    public DdpmConfig Validate()
    {
        Dataset.Validate();
        Diffusion.Validate();
        Model.Validate();
        Train.Validate();
        return this;
    }

    /// <summary>Reads and validates a YAML file.</summary>
    public static DdpmConfig Load(string path)
    {
        if (!File.Exists(path)) throw new ConfigException("(file)", $"config file '{path}' does not exist");
        return Parse(File.ReadAllText(path));
    }

    /// <summary>Parses and validates YAML text.</summary>
    public static DdpmConfig Parse(string yaml)
    {
        var stream = new YamlStream();
        try { stream.Load(new StringReader(yaml)); }
        catch (YamlException e) { throw new ConfigException("(yaml)", $"not valid YAML at line {e.Start.Line}: {e.Message}"); }
        // YamlDotNet's scanner throws these on some malformed input (found by fuzzing).
        catch (Exception e) when (e is InvalidOperationException or ArgumentException)
        {
            throw new ConfigException("(yaml)", $"not valid YAML: {e.Message}");
        }
        if (stream.Documents.Count == 0) return new DdpmConfig().Validate();
        if (stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new ConfigException("(root)", "the document must be a mapping of sections");
        var config = new DdpmConfig();
        foreach (var (keyNode, value) in root.Children)
        {
            var key = (keyNode as YamlScalarNode)?.Value ?? throw new ConfigException("(root)", "section names must be plain words");
            var section = new Section(key, value);
            config = key switch
            {
                "dataset_params" => config with { Dataset = section.ReadDataset() },
                "diffusion_params" => config with { Diffusion = section.ReadDiffusion() },
                "model_params" => config with { Model = section.ReadModel() },
                "train_params" => config with { Train = section.ReadTrain() },
                _ => throw new ConfigException(key, "unknown section (expected dataset_params, diffusion_params, model_params, train_params)"),
            };
        }
        return config.Validate();
    }

    /// <summary>The config as YAML in the same schema (round-trips through <see cref="Parse"/>).</summary>
    public string ToYaml()
    {
        static string L<T>(IEnumerable<T> xs) => "[" + string.Join(", ", xs.Select(x => x switch
        {
            bool b => b ? "true" : "false",
            IFormattable f => f.ToString(null, CultureInfo.InvariantCulture),
            _ => x!.ToString(),
        })) + "]";
        static string D(double d) => d.ToString("R", CultureInfo.InvariantCulture);
        static string S(string s) => "'" + s.Replace("'", "''") + "'";
        var sb = new StringBuilder();
        sb.AppendLine("dataset_params:");
        if (Dataset.Name != null) sb.AppendLine($"  name: {S(Dataset.Name)}");
        sb.AppendLine($"  im_path: {S(Dataset.ImPath)}");
        sb.AppendLine($"  root: {S(Dataset.Root)}");
        if (Dataset.Images != null) sb.AppendLine($"  images: {S(Dataset.Images)}");
        if (Dataset.Labels != null) sb.AppendLine($"  labels: {S(Dataset.Labels)}");
        sb.AppendLine($"  split: {Dataset.Split.ToString().ToLowerInvariant()}");
        sb.AppendLine($"  random_flip: {(Dataset.RandomFlip ? "true" : "false")}");
        sb.AppendLine("diffusion_params:");
        sb.AppendLine($"  num_timesteps: {Diffusion.NumTimesteps}");
        sb.AppendLine($"  beta_start: {D(Diffusion.BetaStart)}");
        sb.AppendLine($"  beta_end: {D(Diffusion.BetaEnd)}");
        sb.AppendLine($"  schedule: {Diffusion.Schedule.ToString().ToLowerInvariant()}");
        sb.AppendLine($"  prediction: {PredictionName(Diffusion.Prediction)}");
        sb.AppendLine("model_params:");
        sb.AppendLine($"  im_channels: {Model.ImChannels}");
        sb.AppendLine($"  im_size: {Model.ImSize}");
        sb.AppendLine($"  down_channels: {L(Model.DownChannels)}");
        sb.AppendLine($"  mid_channels: {L(Model.MidChannels)}");
        sb.AppendLine($"  down_sample: {L(Model.DownSample)}");
        sb.AppendLine($"  time_emb_dim: {Model.TimeEmbDim}");
        sb.AppendLine($"  num_down_layers: {Model.NumDownLayers}");
        sb.AppendLine($"  num_mid_layers: {Model.NumMidLayers}");
        sb.AppendLine($"  num_up_layers: {Model.NumUpLayers}");
        sb.AppendLine($"  num_heads: {Model.NumHeads}");
        sb.AppendLine($"  num_classes: {Model.NumClasses}");
        sb.AppendLine("train_params:");
        sb.AppendLine($"  task_name: {S(Train.TaskName)}");
        sb.AppendLine($"  batch_size: {Train.BatchSize}");
        sb.AppendLine($"  num_epochs: {Train.NumEpochs}");
        sb.AppendLine($"  num_samples: {Train.NumSamples}");
        sb.AppendLine($"  num_grid_rows: {Train.NumGridRows}");
        sb.AppendLine($"  lr: {D(Train.Lr)}");
        sb.AppendLine($"  ckpt_name: {S(Train.CkptName)}");
        sb.AppendLine($"  seed: {Train.Seed}");
        sb.AppendLine($"  max_steps: {Train.MaxSteps}");
        sb.AppendLine($"  ema_decay: {D(Train.EmaDecay)}");
        sb.AppendLine($"  label_dropout: {D(Train.LabelDropout)}");
        sb.AppendLine($"  keep_checkpoints: {Train.KeepCheckpoints}");
        sb.AppendLine($"  on_nonfinite: {Train.OnNonFinite.ToString().ToLowerInvariant()}");
        sb.AppendLine($"  precision: {Train.Precision.ToString().ToLowerInvariant()}");
        return sb.ToString();
    }

    /// <summary>The YAML spelling of a prediction target.</summary>
    public static string PredictionName(PredictionTarget target) => target switch
    {
        PredictionTarget.Epsilon => "epsilon",
        PredictionTarget.X0 => "x0",
        PredictionTarget.V => "v",
        _ => throw new ArgumentOutOfRangeException(nameof(target)),
    };

    /// <summary>Reads one section's scalar and list values with errors that name the key.</summary>
    private sealed class Section
    {
        private readonly string _name;
        private readonly Dictionary<string, YamlNode> _values = new();

        public Section(string name, YamlNode node)
        {
            _name = name;
            if (node is YamlScalarNode { Value: null or "" or "~" or "null" }) return; // empty section
            if (node is not YamlMappingNode map) throw new ConfigException(name, "must be a mapping of keys to values");
            foreach (var (k, v) in map.Children)
                _values[(k as YamlScalarNode)?.Value ?? throw new ConfigException(name, "keys must be plain words")] = v;
        }

        private void RejectUnknown(params string[] known)
        {
            foreach (var k in _values.Keys)
                if (!known.Contains(k))
                    throw new ConfigException($"{_name}.{k}", $"unknown key (known: {string.Join(", ", known)})");
        }

        private string Scalar(string key)
        {
            if (_values[key] is not YamlScalarNode s || s.Value is null)
                throw new ConfigException($"{_name}.{key}", "expected a single value");
            return s.Value;
        }

        private int Int(string key, int fallback) => _values.ContainsKey(key) ? ParseInt(key, Scalar(key)) : fallback;
        private long Long(string key, long fallback)
        {
            if (!_values.ContainsKey(key)) return fallback;
            var s = Scalar(key);
            return long.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
                : throw new ConfigException($"{_name}.{key}", $"expected an integer, got '{s}'");
        }
        private double Double(string key, double fallback)
        {
            if (!_values.ContainsKey(key)) return fallback;
            var s = Scalar(key);
            return double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var v) ? v
                : throw new ConfigException($"{_name}.{key}", $"expected a number, got '{s}'");
        }
        private bool Bool(string key, bool fallback)
        {
            if (!_values.ContainsKey(key)) return fallback;
            var s = Scalar(key);
            return bool.TryParse(s, out var v) ? v
                : throw new ConfigException($"{_name}.{key}", $"expected true or false, got '{s}'");
        }
        private string Str(string key, string fallback) => _values.ContainsKey(key) ? Scalar(key) : fallback;

        private int ParseInt(string key, string s) =>
            int.TryParse(s, NumberStyles.Integer, CultureInfo.InvariantCulture, out var v) ? v
                : throw new ConfigException($"{_name}.{key}", $"expected an integer, got '{s}'");

        private IReadOnlyList<string> List(string key)
        {
            if (_values[key] is not YamlSequenceNode seq) throw new ConfigException($"{_name}.{key}", "expected a list like [32, 64]");
            return seq.Children.Select(c => (c as YamlScalarNode)?.Value
                ?? throw new ConfigException($"{_name}.{key}", "list items must be single values")).ToList();
        }

        private IReadOnlyList<int> IntList(string key, IReadOnlyList<int> fallback) =>
            _values.ContainsKey(key) ? List(key).Select(s => ParseInt(key, s)).ToList() : fallback;

        private IReadOnlyList<bool> BoolList(string key, IReadOnlyList<bool> fallback) =>
            _values.ContainsKey(key)
                ? List(key).Select(s => bool.TryParse(s, out var b) ? b
                    : throw new ConfigException($"{_name}.{key}", $"expected true or false, got '{s}'")).ToList()
                : fallback;

        public DatasetOptions ReadDataset()
        {
            RejectUnknown("name", "im_path", "root", "images", "labels", "split", "random_flip");
            var d = new DatasetOptions();
            var split = d.Split;
            if (_values.ContainsKey("split"))
            {
                var s = Scalar("split");
                split = s.ToLowerInvariant() switch
                {
                    "train" => DatasetSplit.Train,
                    "test" => DatasetSplit.Test,
                    _ => throw new ConfigException($"{_name}.split", $"unknown split '{s}' (known: train, test)"),
                };
            }
            return d with
            {
                Name = _values.ContainsKey("name") ? Scalar("name") : d.Name,
                ImPath = Str("im_path", d.ImPath),
                Root = Str("root", d.Root),
                Images = _values.ContainsKey("images") ? Scalar("images") : d.Images,
                Labels = _values.ContainsKey("labels") ? Scalar("labels") : d.Labels,
                Split = split,
                RandomFlip = Bool("random_flip", d.RandomFlip),
            };
        }

        public DiffusionOptions ReadDiffusion()
        {
            RejectUnknown("num_timesteps", "beta_start", "beta_end", "schedule", "prediction");
            var d = new DiffusionOptions();
            var schedule = d.Schedule;
            if (_values.ContainsKey("schedule"))
            {
                var s = Scalar("schedule");
                schedule = s.ToLowerInvariant() switch
                {
                    "linear" => ScheduleKind.Linear,
                    "cosine" => ScheduleKind.Cosine,
                    _ => throw new ConfigException($"{_name}.schedule", $"unknown schedule '{s}' (known: linear, cosine)"),
                };
            }
            var prediction = d.Prediction;
            if (_values.ContainsKey("prediction"))
            {
                var s = Scalar("prediction");
                prediction = s.ToLowerInvariant() switch
                {
                    "epsilon" or "eps" => PredictionTarget.Epsilon,
                    "x0" or "x_0" or "sample" => PredictionTarget.X0,
                    "v" => PredictionTarget.V,
                    _ => throw new ConfigException($"{_name}.prediction", $"unknown prediction target '{s}' (known: epsilon, x0, v)"),
                };
            }
            return d with
            {
                Prediction = prediction,
                NumTimesteps = Int("num_timesteps", d.NumTimesteps),
                BetaStart = Double("beta_start", d.BetaStart),
                BetaEnd = Double("beta_end", d.BetaEnd),
                Schedule = schedule,
            };
        }

        public UNetOptions ReadModel()
        {
            RejectUnknown("im_channels", "im_size", "down_channels", "mid_channels", "down_sample", "time_emb_dim",
                "num_down_layers", "num_mid_layers", "num_up_layers", "num_heads", "num_classes");
            var d = new UNetOptions();
            return d with
            {
                ImChannels = Int("im_channels", d.ImChannels),
                ImSize = Int("im_size", d.ImSize),
                DownChannels = IntList("down_channels", d.DownChannels),
                MidChannels = IntList("mid_channels", d.MidChannels),
                DownSample = BoolList("down_sample", d.DownSample),
                TimeEmbDim = Int("time_emb_dim", d.TimeEmbDim),
                NumDownLayers = Int("num_down_layers", d.NumDownLayers),
                NumMidLayers = Int("num_mid_layers", d.NumMidLayers),
                NumUpLayers = Int("num_up_layers", d.NumUpLayers),
                NumHeads = Int("num_heads", d.NumHeads),
                NumClasses = Int("num_classes", d.NumClasses),
            };
        }

        public TrainOptions ReadTrain()
        {
            RejectUnknown("task_name", "batch_size", "num_epochs", "num_samples", "num_grid_rows", "lr", "ckpt_name",
                "seed", "max_steps", "ema_decay", "label_dropout", "keep_checkpoints", "on_nonfinite", "precision");
            var d = new TrainOptions();
            var precision = d.Precision;
            if (_values.ContainsKey("precision"))
            {
                var s = Scalar("precision");
                if (!PrecisionNames.TryParse(s, out precision))
                    throw new ConfigException($"{_name}.precision", $"unknown precision '{s}' (known: fp32, bf16)");
            }
            var onNonFinite = d.OnNonFinite;
            if (_values.ContainsKey("on_nonfinite"))
            {
                var s = Scalar("on_nonfinite");
                onNonFinite = s.ToLowerInvariant() switch
                {
                    "stop" => NonFiniteAction.Stop,
                    "skip" => NonFiniteAction.Skip,
                    _ => throw new ConfigException($"{_name}.on_nonfinite", $"unknown action '{s}' (known: stop, skip)"),
                };
            }
            return d with
            {
                TaskName = Str("task_name", d.TaskName),
                BatchSize = Int("batch_size", d.BatchSize),
                NumEpochs = Int("num_epochs", d.NumEpochs),
                NumSamples = Int("num_samples", d.NumSamples),
                NumGridRows = Int("num_grid_rows", d.NumGridRows),
                Lr = Double("lr", d.Lr),
                CkptName = Str("ckpt_name", d.CkptName),
                Seed = Long("seed", d.Seed),
                MaxSteps = Long("max_steps", d.MaxSteps),
                EmaDecay = Double("ema_decay", d.EmaDecay),
                LabelDropout = Double("label_dropout", d.LabelDropout),
                KeepCheckpoints = Int("keep_checkpoints", d.KeepCheckpoints),
                OnNonFinite = onNonFinite,
                Precision = precision,
            };
        }
    }
}
