using Ddpm.Configuration;

namespace Ddpm.Tests.Configuration;

public class DdpmConfigTests
{
    /// <summary>The reference's config/default.yaml, with its spacing (a space before most colons).</summary>
    private const string ReferenceDefaultYaml = """
        dataset_params:
          im_path: 'data/train/images'

        diffusion_params:
          num_timesteps : 1000
          beta_start : 0.0001
          beta_end : 0.02

        model_params:
          im_channels : 1
          im_size : 28
          down_channels : [32, 64, 128, 256]
          mid_channels : [256, 256, 128]
          down_sample : [True, True, False]
          time_emb_dim : 128
          num_down_layers : 2
          num_mid_layers : 2
          num_up_layers : 2
          num_heads : 4

        train_params:
          task_name: 'default'
          batch_size: 64
          num_epochs: 40
          num_samples : 100
          num_grid_rows : 10
          lr: 0.0001
          ckpt_name: 'ddpm_ckpt.pth'
        """;

    [Fact]
    public void The_reference_default_yaml_parses_to_the_reference_values()
    {
        var c = DdpmConfig.Parse(ReferenceDefaultYaml);
        Assert.Null(c.Dataset.Name);
        Assert.Equal("data/train/images", c.Dataset.ImPath);
        Assert.Equal(1000, c.Diffusion.NumTimesteps);
        Assert.Equal(0.0001, c.Diffusion.BetaStart);
        Assert.Equal(0.02, c.Diffusion.BetaEnd);
        Assert.Equal(ScheduleKind.Linear, c.Diffusion.Schedule);
        Assert.Equal(1, c.Model.ImChannels);
        Assert.Equal(28, c.Model.ImSize);
        Assert.Equal(new[] { 32, 64, 128, 256 }, c.Model.DownChannels);
        Assert.Equal(new[] { 256, 256, 128 }, c.Model.MidChannels);
        Assert.Equal(new[] { true, true, false }, c.Model.DownSample);
        Assert.Equal(128, c.Model.TimeEmbDim);
        Assert.Equal(2, c.Model.NumDownLayers);
        Assert.Equal(2, c.Model.NumMidLayers);
        Assert.Equal(2, c.Model.NumUpLayers);
        Assert.Equal(4, c.Model.NumHeads);
        Assert.Equal("default", c.Train.TaskName);
        Assert.Equal(64, c.Train.BatchSize);
        Assert.Equal(40, c.Train.NumEpochs);
        Assert.Equal(100, c.Train.NumSamples);
        Assert.Equal(10, c.Train.NumGridRows);
        Assert.Equal(0.0001, c.Train.Lr);
        Assert.Equal("ddpm_ckpt.pth", c.Train.CkptName);
    }

    [Fact]
    public void ToYaml_round_trips_through_Parse()
    {
        var original = DdpmConfig.Parse(ReferenceDefaultYaml) with
        {
            Dataset = new DatasetOptions { Name = "synthetic", ImPath = "it's/here", Root = "/tmp/x" },
            Diffusion = new DiffusionOptions { NumTimesteps = 123, BetaStart = 1.5e-4, BetaEnd = 0.0123456789, Schedule = ScheduleKind.Cosine },
            Train = new TrainOptions { TaskName = "t", BatchSize = 3, Lr = 2.5e-4, Seed = 77, MaxSteps = 9 },
        };
        var yaml = original.ToYaml();
        var back = DdpmConfig.Parse(yaml);
        Assert.Equal(yaml, back.ToYaml());
        Assert.Equal("synthetic", back.Dataset.Name);
        Assert.Equal("it's/here", back.Dataset.ImPath);
        Assert.Equal(0.0123456789, back.Diffusion.BetaEnd);
        Assert.Equal(ScheduleKind.Cosine, back.Diffusion.Schedule);
        Assert.Equal(new[] { true, true, false }, back.Model.DownSample);
        Assert.Equal(2.5e-4, back.Train.Lr);
        Assert.Equal(77, back.Train.Seed);
        Assert.Equal(9, back.Train.MaxSteps);
    }

    [Fact]
    public void Missing_keys_take_the_reference_defaults()
    {
        var c = DdpmConfig.Parse("train_params:\n  batch_size: 8\n");
        Assert.Equal(8, c.Train.BatchSize);
        Assert.Equal(1000, c.Diffusion.NumTimesteps);
        Assert.Equal(new[] { 32, 64, 128, 256 }, c.Model.DownChannels);
    }

    public static TheoryData<string, string, string> InvalidCases => new()
    {
        // section, key: value, expected ConfigException.Key
        { "model_params", "down_channels: [32, 60, 128, 256]", "model_params.down_channels" },
        { "model_params", "mid_channels: [256, 252, 128]", "model_params.mid_channels" },
        { "model_params", "num_heads: 3", "model_params.num_heads" },
        { "model_params", "mid_channels: [128, 256, 128]", "model_params.mid_channels" },
        { "model_params", "mid_channels: [256, 256, 64]", "model_params.mid_channels" },
        { "model_params", "down_sample: [True, True]", "model_params.down_sample" },
        { "model_params", "down_sample: [True, True, False, True]", "model_params.down_sample" },
        { "diffusion_params", "num_timesteps: 0", "diffusion_params.num_timesteps" },
        { "diffusion_params", "num_timesteps: -5", "diffusion_params.num_timesteps" },
        { "diffusion_params", "beta_start: 0", "diffusion_params.beta_start" },
        { "diffusion_params", "beta_end: 1.0", "diffusion_params.beta_end" },
        { "diffusion_params", "beta_start: -0.1", "diffusion_params.beta_start" },
        { "model_params", "num_headz: 4", "model_params.num_headz" },
        { "train_params", "learning_rate: 0.1", "train_params.learning_rate" },
        { "train_params", "batch_size: sixty", "train_params.batch_size" },
        { "diffusion_params", "beta_end: abc", "diffusion_params.beta_end" },
        { "model_params", "down_channels: [32, x, 128, 256]", "model_params.down_channels" },
        { "model_params", "attention_levels: [false, true]", "model_params.attention_levels" },
        { "model_params", "attention_levels: [no, true, true]", "model_params.attention_levels" },
        { "train_params", "lr_schedule: step", "train_params.lr_schedule" },
        { "train_params", "lr_warmup_steps: -1", "train_params.lr_warmup_steps" },
        { "train_params", "min_snr_gamma: -5", "train_params.min_snr_gamma" },
        { "train_params", "min_snr_gamma: .inf", "train_params.min_snr_gamma" },
    };

    [Fact]
    public void Attention_levels_lr_schedule_and_min_snr_default_to_the_seed_and_round_trip()
    {
        var seed = DdpmConfig.Parse("train_params:\n  batch_size: 8\n");
        Assert.Null(seed.Model.AttentionLevels);
        Assert.True(Enumerable.Range(0, 3).All(seed.Model.HasAttention));
        Assert.Equal(LrScheduleKind.Constant, seed.Train.LrSchedule);
        Assert.Equal(0, seed.Train.LrWarmupSteps);
        Assert.Equal(0, seed.Train.MinSnrGamma);
        Assert.DoesNotContain("attention_levels", seed.ToYaml());

        var c = DdpmConfig.Parse("model_params:\n  attention_levels: [false, true, true]\n" +
            "train_params:\n  lr_schedule: cosine\n  lr_warmup_steps: 100\n  min_snr_gamma: 5\n");
        Assert.Equal(new[] { false, true, true }, c.Model.AttentionLevels);
        Assert.False(c.Model.HasAttention(0));
        Assert.True(c.Model.HasAttention(2));
        var back = DdpmConfig.Parse(c.ToYaml());
        Assert.Equal(c.ToYaml(), back.ToYaml());
        Assert.Equal(new[] { false, true, true }, back.Model.AttentionLevels);
        Assert.Equal(LrScheduleKind.Cosine, back.Train.LrSchedule);
        Assert.Equal(100, back.Train.LrWarmupSteps);
        Assert.Equal(5, back.Train.MinSnrGamma);
        Assert.Equal(LrScheduleKind.Linear, DdpmConfig.Parse("train_params:\n  lr_schedule: Linear\n").Train.LrSchedule);
    }

    [Theory]
    [MemberData(nameof(InvalidCases))]
    public void An_invalid_value_throws_ConfigException_naming_the_key(string section, string line, string expectedKey)
    {
        var e = Assert.Throws<ConfigException>(() => DdpmConfig.Parse($"{section}:\n  {line}\n"));
        Assert.Equal(expectedKey, e.Key);
        Assert.Contains(expectedKey, e.Message);
    }

    [Fact]
    public void An_unknown_section_throws_ConfigException_naming_it()
    {
        var e = Assert.Throws<ConfigException>(() => DdpmConfig.Parse("sampling_params:\n  x: 1\n"));
        Assert.Equal("sampling_params", e.Key);
    }

    [Fact]
    public void A_missing_config_file_throws_ConfigException()
    {
        var path = Path.Combine(Path.GetTempPath(), $"missing-{Guid.NewGuid():N}.yaml");
        var e = Assert.Throws<ConfigException>(() => DdpmConfig.Load(path));
        Assert.Contains(path, e.Message);
    }
}
