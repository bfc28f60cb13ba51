using Ddpm.Configuration;

namespace Ddpm.Tests.Interop;

/// <summary>The PyTorch reference fixtures in ../shared/fixtures/pytorch-ddpm beside the repository root.</summary>
internal static class Fixtures
{
    public static string Dir { get; } = Locate();

    public static string Pth => Path.Combine(Dir, "small_unet.pth");
    public static string Safetensors => Path.Combine(Dir, "small_unet.safetensors");
    public static string Io => Path.Combine(Dir, "small_unet_io.safetensors");

    /// <summary>The fixtures' model config (their README), with a short schedule so sampling tests are fast.</summary>
    public const string Yaml = """
        diffusion_params:
          num_timesteps: 10
        model_params:
          im_channels: 1
          im_size: 28
          down_channels: [16, 32, 32, 32]
          mid_channels: [32, 32, 32]
          down_sample: [True, True, False]
          time_emb_dim: 32
          num_down_layers: 1
          num_mid_layers: 1
          num_up_layers: 1
          num_heads: 4
        train_params:
          num_samples: 4
          num_grid_rows: 2
        """;

    public static DdpmConfig Config { get; } = DdpmConfig.Parse(Yaml);

    private static string Locate()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (!File.Exists(Path.Combine(dir.FullName, "Ddpm.slnx"))) continue;
            var fixtures = Path.GetFullPath(Path.Combine(dir.FullName, "..", "shared", "fixtures", "pytorch-ddpm"));
            if (!File.Exists(Path.Combine(fixtures, "small_unet.pth")))
                throw new InvalidOperationException($"PyTorch fixtures not found: expected {fixtures}/small_unet.pth " +
                    "(the shared fixtures folder beside the repository root)");
            return fixtures;
        }
        throw new InvalidOperationException($"no Ddpm.slnx above {AppContext.BaseDirectory}: cannot locate the repository root");
    }
}
