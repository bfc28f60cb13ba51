using System.Numerics;
using System.Text;

namespace Ddpm.Configuration;

/// <summary>
/// The config schema, declared once: every key of every section with its YAML name, type, record property, doc line and
/// check. <see cref="DdpmConfig.Parse"/> reads through it (rejecting unknown keys with the list of known ones),
/// <see cref="DdpmConfig.Validate"/> checks through it (errors name the key), <see cref="DdpmConfig.ToYaml"/> writes
/// through it, <c>ddpm info --keys</c> prints it (<see cref="Describe"/>, kept as <c>docs/config.md</c>), and the tests
/// run over every key it lists. A key's default is the initial value of its record property, so <c>new
/// TrainOptions()</c> and a config without the key agree by construction.
/// <para>
/// <b>Adding a key</b> (e.g. <c>train_params.min_snr_gamma</c>):
/// <list type="number">
/// <item>add the property, with its default and a doc comment, to the section's record:
/// <code>public double MinSnrGamma { get; init; } = 0;</code></item>
/// <item>declare it here, in its section, where it should appear in written YAML:
/// <code>.Key("min_snr_gamma", ConfigType.Number, o => o.MinSnrGamma, (o, v) => o with { MinSnrGamma = v },
/// "Min-SNR-γ loss weighting (Hang et al. 2023; 0 = off)", AtLeast(0.0))</code> A key whose value is an enum uses
/// <c>ConfigType.Enum&lt;T&gt;("what it is")</c>; its spellings come from <see cref="EnumNames"/> (kebab-case member
/// names, <see cref="AlsoSpelledAttribute"/> for aliases). A check of several keys together is a <c>.Rule("key", o
/// =&gt; problem or null)</c> after the keys.</item>
/// <item>give the key a non-default example in <c>ConfigSchemaTests.Examples</c> (the test fails until every key has
/// one) and regenerate the reference: <c>ddpm info --keys &gt; docs/config.md</c>.</item>
/// </list>
/// A new section is a record, a property on <see cref="DdpmConfig"/>, a <see cref="ConfigSection{TOptions}"/> here and
/// an entry in <see cref="Sections"/>.
/// </para>
/// </summary>
public static class ConfigSchema
{
    /// <summary><c>dataset_params</c>: where training images come from.</summary>
    public static ConfigSection<DatasetOptions> Dataset { get; } =
        new ConfigSection<DatasetOptions>("dataset_params", c => c.Dataset, (c, v) => c with { Dataset = v })
            .Key("name", ConfigType.OptionalText with { Description = "one of: " + string.Join(", ", EnumNames.Names<DatasetKind>()) },
                o => o.Name, (o, v) => o with { Name = v },
                "the image source: folder (im_path; the default, as the reference), mnist or cifar10 (root), idx (images, labels), synthetic",
                v => v is null || EnumNames.TryParse<DatasetKind>(v, out _) ? null : EnumNames.Unknown<DatasetKind>(v, "dataset"))
            .Key("im_path", ConfigType.Text, o => o.ImPath, (o, v) => o with { ImPath = v },
                "the image folder of name: folder (one subfolder of images per label, or a flat folder)")
            .Key("root", ConfigType.Text, o => o.Root, (o, v) => o with { Root = v },
                "where name: mnist is cached and name: cifar10 is unpacked")
            .Key("images", ConfigType.OptionalText, o => o.Images, (o, v) => o with { Images = v },
                "name: idx only: the IDX image file (raw or .gz)")
            .Key("labels", ConfigType.OptionalText, o => o.Labels, (o, v) => o with { Labels = v },
                "name: idx only: the IDX label file (raw or .gz); absent = unlabelled")
            .Key("split", ConfigType.Enum<DatasetSplit>("split"), o => o.Split, (o, v) => o with { Split = v },
                "the training or test part of mnist / cifar10")
            .Key("random_flip", ConfigType.Bool, o => o.RandomFlip, (o, v) => o with { RandomFlip = v },
                "flip each training image left-right with probability 1/2")
            .Rule("images", o => o.Kind == DatasetKind.Idx && string.IsNullOrWhiteSpace(o.Images)
                ? "name: idx needs the path of an IDX image file in 'images'" : null)
            .Rule("images", o => o.Kind != DatasetKind.Idx && o.Images is not null ? "only used with name: idx" : null)
            .Rule("labels", o => o.Kind != DatasetKind.Idx && o.Labels is not null ? "only used with name: idx" : null)
            .Rule("im_path", o => o.Kind == DatasetKind.Folder && string.IsNullOrWhiteSpace(o.ImPath) ? "must name an image folder" : null)
            .Rule("root", o => o.Kind is DatasetKind.Mnist or DatasetKind.Cifar10 && string.IsNullOrWhiteSpace(o.Root)
                ? $"name: {o.Name} needs a root folder" : null);

    /// <summary><c>diffusion_params</c>: the forward process.</summary>
    public static ConfigSection<DiffusionOptions> Diffusion { get; } =
        new ConfigSection<DiffusionOptions>("diffusion_params", c => c.Diffusion, (c, v) => c with { Diffusion = v })
            .Key("num_timesteps", ConfigType.Int, o => o.NumTimesteps, (o, v) => o with { NumTimesteps = v },
                "T, the number of forward (noising) steps", Between(1, MaxTimesteps))
            .Key("beta_start", ConfigType.Number, o => o.BetaStart, (o, v) => o with { BetaStart = v },
                "β_1 of the linear schedule", Within01)
            .Key("beta_end", ConfigType.Number, o => o.BetaEnd, (o, v) => o with { BetaEnd = v },
                "β_T of the linear schedule", Within01)
            .Key("schedule", ConfigType.Enum<ScheduleKind>("schedule"), o => o.Schedule, (o, v) => o with { Schedule = v },
                "the β schedule: linear (Ho et al. 2020) or cosine (Nichol & Dhariwal 2021)")
            .Key("prediction", ConfigType.Enum<PredictionTarget>("prediction target"), o => o.Prediction, (o, v) => o with { Prediction = v },
                "what the network outputs: epsilon (the seed), x0, or v (Salimans & Ho 2022)")
            .Rule("beta_end", o => o.BetaEnd < o.BetaStart ? $"{o.BetaEnd} is smaller than beta_start {o.BetaStart}" : null);

    /// <summary><c>model_params</c>: the reference U-Net's shape.</summary>
    public static ConfigSection<UNetOptions> Model { get; } =
        new ConfigSection<UNetOptions>("model_params", c => c.Model, (c, v) => c with { Model = v })
            .Key("im_channels", ConfigType.Int, o => o.ImChannels, (o, v) => o with { ImChannels = v },
                "image channels (1 for MNIST, 3 for CIFAR-10)", Between(1, 1024))
            .Key("im_size", ConfigType.Int, o => o.ImSize, (o, v) => o with { ImSize = v },
                "image height and width in pixels", Between(1, MaxImageSize))
            .Key("down_channels", ConfigType.IntList, o => o.DownChannels, (o, v) => o with { DownChannels = v },
                "channels of each down level (at least 2, multiples of the 8 GroupNorm groups)", Widths)
            .Key("mid_channels", ConfigType.IntList, o => o.MidChannels, (o, v) => o with { MidChannels = v },
                "channels through the mid blocks: first = down_channels[-1], last = down_channels[-2]", Widths)
            .Key("down_sample", ConfigType.BoolList, o => o.DownSample, (o, v) => o with { DownSample = v },
                "whether each down block halves the resolution (len(down_channels) − 1 entries)")
            .Key("time_emb_dim", ConfigType.Int, o => o.TimeEmbDim, (o, v) => o with { TimeEmbDim = v },
                "width of the sinusoidal time embedding",
                v => v >= 2 && v % 2 == 0 && v <= MaxChannels ? null : $"must be a positive even number up to {MaxChannels}, got {v}")
            .Key("num_down_layers", ConfigType.Int, o => o.NumDownLayers, (o, v) => o with { NumDownLayers = v },
                "ResNet + attention layers per down block", Between(1, MaxLayers))
            .Key("num_mid_layers", ConfigType.Int, o => o.NumMidLayers, (o, v) => o with { NumMidLayers = v },
                "ResNet + attention layers per mid block", Between(1, MaxLayers))
            .Key("num_up_layers", ConfigType.Int, o => o.NumUpLayers, (o, v) => o with { NumUpLayers = v },
                "ResNet + attention layers per up block", Between(1, MaxLayers))
            .Key("num_heads", ConfigType.Int, o => o.NumHeads, (o, v) => o with { NumHeads = v },
                "self-attention heads (must divide every attention width)", Between(1, MaxChannels))
            .Key("num_classes", ConfigType.Int, o => o.NumClasses, (o, v) => o with { NumClasses = v },
                "classes for class-conditional training (0 = unconditional, the seed)", Between(0, 1_000_000))
            .Key("attention_levels", ConfigType.OptionalBoolList, o => o.AttentionLevels, (o, v) => o with { AttentionLevels = v },
                "which down levels (and their mirrored up levels) have self-attention, one entry per down_sample; absent = all, the seed; the mid blocks always keep theirs")
            .Rule("down_sample", o => o.DownSample.Count == o.DownChannels.Count - 1 ? null
                : $"has {o.DownSample.Count} entries but len(down_channels) - 1 = {o.DownChannels.Count - 1}")
            .Rule("attention_levels", o => o.AttentionLevels is null || o.AttentionLevels.Count == o.DownSample.Count ? null
                : $"has {o.AttentionLevels.Count} entries but down_sample has {o.DownSample.Count} (one per level)")
            .Rule("mid_channels", o => o.MidChannels[0] == o.DownChannels[^1] ? null
                : $"mid_channels[0] = {o.MidChannels[0]} must equal down_channels[-1] = {o.DownChannels[^1]}")
            .Rule("mid_channels", o => o.MidChannels[^1] == o.DownChannels[^2] ? null
                : $"mid_channels[-1] = {o.MidChannels[^1]} must equal down_channels[-2] = {o.DownChannels[^2]}")
            .Rule("num_heads", o => o.DownChannels.Skip(1).Concat(o.MidChannels).Append(UNetOptions.OutChannels)
                .Where(c => c % o.NumHeads != 0).Select(c => $"{o.NumHeads} heads do not divide an attention width of {c} channels")
                .FirstOrDefault())
            .Rule("im_size", o =>
            {
                int halvings = o.DownSample.Count(d => d), factor = 1 << halvings;
                return o.ImSize % factor == 0 ? null
                    : $"{o.ImSize} is not divisible by 2^{halvings} = {factor} (one halving per down_sample)";
            });

    /// <summary><c>train_params</c>: the run.</summary>
    public static ConfigSection<TrainOptions> Train { get; } =
        new ConfigSection<TrainOptions>("train_params", c => c.Train, (c, v) => c with { Train = v })
            .Key("task_name", ConfigType.Text, o => o.TaskName, (o, v) => o with { TaskName = v },
                "the run's name; ddpm train writes to runs/TASK_NAME unless given --out", TaskName)
            .Key("batch_size", ConfigType.Int, o => o.BatchSize, (o, v) => o with { BatchSize = v },
                "images per optimizer step", AtLeast(1))
            .Key("num_epochs", ConfigType.Int, o => o.NumEpochs, (o, v) => o with { NumEpochs = v },
                "passes over the training images", AtLeast(1))
            .Key("num_samples", ConfigType.Int, o => o.NumSamples, (o, v) => o with { NumSamples = v },
                "images ddpm sample draws unless given --num", Between(1, 1_000_000))
            .Key("num_grid_rows", ConfigType.Int, o => o.NumGridRows, (o, v) => o with { NumGridRows = v },
                "images per row of the sample grid (make_grid's nrow)", Between(1, 10_000))
            .Key("lr", ConfigType.Number, o => o.Lr, (o, v) => o with { Lr = v },
                "Adam's learning rate", v => v > 0 && !double.IsInfinity(v) ? null : $"must be a positive number, got {v}")
            .Key("ckpt_name", ConfigType.Text, o => o.CkptName, (o, v) => o with { CkptName = v },
                "the reference's checkpoint name, kept for compatibility (ddpm train writes checkpoint.ckpt)")
            .Key("seed", ConfigType.Long, o => o.Seed, (o, v) => o with { Seed = v },
                "seeds the initial weights, the data order and flips, t, ε and label dropout")
            .Key("max_steps", ConfigType.Long, o => o.MaxSteps, (o, v) => o with { MaxSteps = v },
                "stop after this many optimizer steps in total (0 = no limit; epochs still bound the run)", AtLeast(0L))
            .Key("ema_decay", ConfigType.Number, o => o.EmaDecay, (o, v) => o with { EmaDecay = v },
                "decay of the exponential moving average of the weights, with warm-up (0 = no EMA)", FromZeroBelowOne)
            .Key("label_dropout", ConfigType.Number, o => o.LabelDropout, (o, v) => o with { LabelDropout = v },
                "probability of training on the null label instead (classifier-free guidance)", FromZeroBelowOne)
            .Key("keep_checkpoints", ConfigType.Int, o => o.KeepCheckpoints, (o, v) => o with { KeepCheckpoints = v },
                "numbered checkpoints kept beside checkpoint.ckpt (0 = only the latest)", AtLeast(0))
            .Key("on_nonfinite", ConfigType.Enum<NonFiniteAction>("action"), o => o.OnNonFinite, (o, v) => o with { OnNonFinite = v },
                "a NaN or infinite loss or gradient: stop the run, or skip that step")
            .Key("precision", ConfigType.Enum<Precision>("precision"), o => o.Precision, (o, v) => o with { Precision = v },
                "fp32, or bf16 forward and backward passes with float32 master weights")
            .Key("lr_schedule", ConfigType.Enum<LrScheduleKind>("lr schedule"), o => o.LrSchedule, (o, v) => o with { LrSchedule = v },
                "the learning rate after the warm-up: constant (the seed), or cosine / linear decay to 0 at the run's last step")
            .Key("lr_warmup_steps", ConfigType.Long, o => o.LrWarmupSteps, (o, v) => o with { LrWarmupSteps = v },
                "optimizer steps over which the learning rate rises linearly to lr (0 = none)", AtLeast(0L))
            .Key("min_snr_gamma", ConfigType.Number, o => o.MinSnrGamma, (o, v) => o with { MinSnrGamma = v },
                "Min-SNR-γ loss weighting (Hang et al. 2023), typically 5; 0 = the seed's unweighted MSE",
                v => v >= 0 && !double.IsInfinity(v) ? null : $"must be a finite number >= 0 (0 = off), got {v}");

    /// <summary>Every section, in the order <see cref="DdpmConfig.ToYaml"/> writes them.</summary>
    public static IReadOnlyList<ConfigSection> Sections { get; } = [Dataset, Diffusion, Model, Train];

    /// <summary>Every key of every section, in written order.</summary>
    public static IEnumerable<ConfigKey> Keys => Sections.SelectMany(s => s.Keys);

    /// <summary>The schema as a Markdown reference: one table row per key with its type, default and doc
    /// line.</summary>
    public static string Describe()
    {
        var defaults = new DdpmConfig();
        var md = new StringBuilder();
        md.Append("# Config keys\n\n")
          .Append("Generated by `ddpm info --keys` from `src/Ddpm/Configuration/ConfigSchema.cs`. A missing key takes its default; ")
          .Append("an unknown key is an error.\n");
        foreach (var section in Sections)
        {
            md.Append("\n## ").Append(section.Name).Append("\n\n| key | type | default | meaning |\n| --- | --- | --- | --- |\n");
            foreach (var key in section.Keys)
                md.Append($"| `{key.Name}` | {key.Type} | {(key.Format(defaults) is { } d ? $"`{d}`" : "–")} | {key.Doc.Replace("|", "\\|")} |\n");
        }
        return md.ToString();
    }

    /// <summary>Upper bounds on sizes: far beyond any real model, low enough that a typo cannot ask for
    /// terabytes.</summary>
    public const int MaxTimesteps = 100_000, MaxImageSize = 4096, MaxChannels = 65_536, MaxLayers = 64;

    private static Func<T, string?> AtLeast<T>(T min) where T : INumber<T> => v => v >= min ? null : $"must be >= {min}, got {v}";
    /// <summary>A task name is one folder name inside runs/: no separators, not . or .., no control
    /// characters.</summary>
    private static string? TaskName(string v) =>
        v.Length == 0 ? "must not be empty"
        : v.Length > 100 ? $"must be a folder name of at most 100 characters, got {v.Length}"
        : v is "." or ".." || v.IndexOfAny(['/', '\\']) >= 0 || v.Any(char.IsControl)
            ? $"must be a plain folder name inside runs/ (no '/', '\\', '..' or control characters), got '{v}'"
        : null;
    private static Func<T, string?> Between<T>(T min, T max) where T : INumber<T> =>
        v => v < min ? $"must be >= {min}, got {v}" : v > max ? $"must be at most {max:N0}, got {v:N0}" : null;
    private static string? Within01(double v) => v > 0 && v < 1 ? null : $"must lie in (0, 1), got {v}";
    private static string? FromZeroBelowOne(double v) => v >= 0 && v < 1 ? null : $"must lie in [0, 1), got {v}";

    private static string? Widths(IReadOnlyList<int> channels) =>
        channels.Count < 2 ? "needs at least 2 entries"
        : channels.Count > MaxLayers ? $"has {channels.Count} entries; at most {MaxLayers} are allowed"
        : channels.Where(c => c <= 0 || c % UNetOptions.Groups != 0)
            .Select(c => $"{c} is not a positive multiple of the {UNetOptions.Groups} GroupNorm groups")
            .Concat(channels.Where(c => c > MaxChannels).Select(c => $"{c:N0} channels is more than the {MaxChannels:N0} allowed")).FirstOrDefault();
}
