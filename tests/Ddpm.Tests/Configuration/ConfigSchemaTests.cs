using Ddpm.Configuration;

namespace Ddpm.Tests.Configuration;

/// <summary>Every key of <see cref="ConfigSchema"/>: missing → default, given → read, round trip through ToYaml, wrong
/// type → error naming it.</summary>
public class ConfigSchemaTests
{
    /// <summary>
    /// A valid value that differs from the default, for every key, chosen so that all of them hold together in one
    /// config (e.g. mid_channels fits down_channels). A new key needs one here: <see cref="Every_key_has_an_example"/>
    /// fails until it has.
    /// </summary>
    private static readonly Dictionary<string, string> Examples = new()
    {
        ["dataset_params.name"] = "idx",
        ["dataset_params.im_path"] = "'pictures/train'",
        ["dataset_params.root"] = "cache",
        ["dataset_params.images"] = "'x.idx.gz'",
        ["dataset_params.labels"] = "y.idx.gz",
        ["dataset_params.split"] = "test",
        ["dataset_params.random_flip"] = "True",
        ["diffusion_params.num_timesteps"] = "321",
        ["diffusion_params.beta_start"] = "0.00015",
        ["diffusion_params.beta_end"] = "0.0123456789",
        ["diffusion_params.schedule"] = "cosine",
        ["diffusion_params.prediction"] = "v",
        ["model_params.im_channels"] = "3",
        ["model_params.im_size"] = "32",
        ["model_params.down_channels"] = "[16, 32, 64]",
        ["model_params.mid_channels"] = "[64, 48, 32]",
        ["model_params.down_sample"] = "[true, False]",
        ["model_params.time_emb_dim"] = "64",
        ["model_params.num_down_layers"] = "3",
        ["model_params.num_mid_layers"] = "1",
        ["model_params.num_up_layers"] = "4",
        ["model_params.num_heads"] = "2",
        ["model_params.num_classes"] = "10",
        ["model_params.attention_levels"] = "[False, true]",
        ["train_params.task_name"] = "'it''s mine'",
        ["train_params.batch_size"] = "7",
        ["train_params.num_epochs"] = "3",
        ["train_params.num_samples"] = "16",
        ["train_params.num_grid_rows"] = "4",
        ["train_params.lr"] = "2.5e-4",
        ["train_params.ckpt_name"] = "model.pth",
        ["train_params.seed"] = "12345678901",
        ["train_params.max_steps"] = "9",
        ["train_params.ema_decay"] = "0.999",
        ["train_params.label_dropout"] = "0.1",
        ["train_params.keep_checkpoints"] = "5",
        ["train_params.on_nonfinite"] = "skip",
        ["train_params.precision"] = "BF16",
        ["train_params.lr_schedule"] = "Cosine",
        ["train_params.lr_warmup_steps"] = "100",
        ["train_params.min_snr_gamma"] = "5",
    };

    public static TheoryData<string> KeyPaths => new(ConfigSchema.Keys.Select(k => k.Path));

    private static ConfigKey Key(string path) => ConfigSchema.Keys.Single(k => k.Path == path);

    /// <summary>YAML with the example value of every key for which <paramref name="include"/> holds.</summary>
    private static string ExampleYaml(Func<ConfigKey, bool> include) => string.Concat(ConfigSchema.Sections.Select(section =>
        section.Name + ":\n" + string.Concat(section.Keys.Where(include).Select(k => $"  {k.Name}: {Examples[k.Path]}\n"))));

    private static readonly DdpmConfig Defaults = new();

    [Fact]
    public void Every_key_has_an_example()
    {
        var paths = ConfigSchema.Keys.Select(k => k.Path).ToList();
        Assert.Equal(paths.Count, paths.Distinct().Count());
        Assert.Equal(paths.Order(), Examples.Keys.Order());
        Assert.Equal(ConfigSchema.Sections.Select(s => s.Name), ["dataset_params", "diffusion_params", "model_params", "train_params"]);
    }

    [Theory]
    [MemberData(nameof(KeyPaths))]
    public void A_missing_key_takes_its_default_and_a_given_one_is_read_and_round_trips(string path)
    {
        var key = Key(path);
        // Missing: every other section fully given, this key's section empty.
        var without = DdpmConfig.Parse(ExampleYaml(k => k.Section != key.Section));
        Assert.Equal(key.Format(Defaults), key.Format(without));

        var with = DdpmConfig.Parse(ExampleYaml(_ => true));
        Assert.NotNull(key.Format(with));
        Assert.NotEqual(key.Format(Defaults), key.Format(with));

        var yaml = with.ToYaml();
        var back = DdpmConfig.Parse(yaml);
        Assert.Equal(key.Format(with), key.Format(back));
        Assert.Equal(yaml, back.ToYaml());
        Assert.Contains($"\n  {key.Name}: {key.Format(with)}\n", "\n" + yaml);
    }

    [Theory]
    [MemberData(nameof(KeyPaths))]
    public void A_value_of_the_wrong_type_is_an_error_naming_the_key(string path)
    {
        var key = Key(path);
        bool list = key.Type.StartsWith("list", StringComparison.Ordinal);
        var wrong = new List<string> { "{a: 1}", list ? "7" : "[1, 2]" };
        if (key.Type switch
            {
                "integer" => "seven",
                "number" => "abc",
                "true or false" => "maybe",
                "list of integers" => "[8, x]",
                "list of true/false" => "[true, maybe]",
                _ when key.Type.StartsWith("one of", StringComparison.Ordinal) => "nonsense",
                _ => null,
            } is { } bad)
            wrong.Add(bad);
        foreach (var value in wrong)
        {
            var e = Assert.Throws<ConfigException>(() => DdpmConfig.Parse($"{key.Section}:\n  {key.Name}: {value}\n"));
            Assert.Equal(path, e.Key);
            Assert.Contains(path, e.Message);
        }
    }

    [Fact]
    public void Typed_values_of_the_examples_are_what_the_yaml_says()
    {
        var c = DdpmConfig.Parse(ExampleYaml(_ => true));
        Assert.Equal(DatasetKind.Idx, c.Dataset.Kind);
        Assert.Equal("y.idx.gz", c.Dataset.Labels);
        Assert.Equal(DatasetSplit.Test, c.Dataset.Split);
        Assert.True(c.Dataset.RandomFlip);
        Assert.Equal(0.0123456789, c.Diffusion.BetaEnd);
        Assert.Equal(PredictionTarget.V, c.Diffusion.Prediction);
        Assert.Equal([64, 48, 32], c.Model.MidChannels);
        Assert.Equal([true, false], c.Model.DownSample);
        Assert.Equal("it's mine", c.Train.TaskName);
        Assert.Equal(12345678901L, c.Train.Seed);
        Assert.Equal(2.5e-4, c.Train.Lr);
        Assert.Equal(NonFiniteAction.Skip, c.Train.OnNonFinite);
        Assert.Equal(Precision.Bf16, c.Train.Precision);
    }

    [Fact]
    public void Text_with_a_newline_or_a_quote_reads_back_as_written()
    {
        // ckpt_name: task_name is a folder name and refuses control characters.
        var config = new DdpmConfig { Train = new TrainOptions { CkptName = "two\nlines, a tab\t and 'quotes' \"both\"" } };
        Assert.Equal(config.Train.CkptName, DdpmConfig.Parse(config.ToYaml()).Train.CkptName);
    }

    [Fact]
    public void An_unknown_key_lists_the_known_ones_and_is_reported_before_a_bad_value()
    {
        var e = Assert.Throws<ConfigException>(() => DdpmConfig.Parse("train_params:\n  batch_size: sixty\n  learning_rate: 0.1\n"));
        Assert.Equal("train_params.learning_rate", e.Key);
        Assert.Contains("unknown key (known: task_name, batch_size, num_epochs", e.Message);
    }

    [Fact]
    public void The_keys_reference_in_docs_is_the_schemas_description()
    {
        var doc = File.ReadAllText(Path.Combine(TestPaths.RepoRoot, "docs", "config.md"));
        Assert.True(doc == ConfigSchema.Describe(), "docs/config.md is out of date: regenerate it with `ddpm info --keys > docs/config.md`");
        foreach (var key in ConfigSchema.Keys) Assert.Contains($"| `{key.Name}` |", doc);
    }
}
